"""The preprocessing contract, end to end ("Prove it" of issue 12).

1. A model whose preprocessing is not the default (CT window [-200, 300], 1.5 mm, RAS) is
   trained on data prepared that way, saved in each format (Lightning, release, safetensors)
   and registered; the Lightning validation step, ``evaluate`` (every format), ``predict``,
   the :class:`~neurosam3d.model.Predictor` and the registered pyfunc give identical first
   logits for the same real image and click.
2. On the anisotropic T2* volume, ``prepare --spacing-mm`` and evaluation's resampling put the
   voxel centres at the same world positions.

The logits are observed with forward hooks on the real networks (nothing is replaced).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from neurosam3d.cli import app
from neurosam3d.data.config import config_for_layout
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.io.nifti import load_nifti, make_image, save_nifti
from neurosam3d.transforms import Preprocessing
from neurosam3d.transforms.geometry import Box
from tests.data.conftest import add_case, write_nnunet

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CT = SAMPLES / "nnUNet_raw" / "Dataset001_TotalSegCT"
KIDNEY_LEFT = 3  # fits a 64^3 window at 1.5 mm (44 x 46 x 46 voxels)
RECORD = Preprocessing(
    orientation="RAS", spacing_mm=1.5, ct_window=(-200.0, 300.0), intensity="zscore"
)
#: same network, same input: equal up to float rounding of different batch layouts
ATOL = 1e-5


class Tap:
    """Forward hooks on a Sam3D: the encoder inputs, the clicks and the low-res logits of
    every decoder call, in order."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        self.points: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        model.image_encoder.register_forward_pre_hook(
            lambda m, args: self.inputs.append(args[0].detach().float().cpu().clone())
        )
        model.prompt_encoder.register_forward_pre_hook(self._prompts, with_kwargs=True)
        model.mask_decoder.register_forward_hook(
            lambda m, args, out: self.logits.append(out[0].detach().float().cpu().clone())
        )

    def _prompts(self, module, args, kwargs) -> None:
        points = kwargs.get("points", args[0] if args else None)
        self.points.append(points[0].detach().cpu().clone())


def _lps_case(tmp: Path) -> Path:
    """The shipped CT s0002 (RAS, 3 mm) stored with flipped i and j (LPS), left kidney only."""
    raw = write_nnunet(tmp / "Dataset930_ContractCT", {"kidney_left": KIDNEY_LEFT}, channel="CT")
    image = load_nifti(CT / "imagesTr" / "s0002_0000.nii.gz")
    label = np.asanyarray(load_nifti(CT / "labelsTr" / "s0002.nii.gz").dataobj)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.asarray(image.shape[:2]) - 1
    affine = image.affine @ flip
    data = np.asanyarray(image.dataobj)[::-1, ::-1].copy()
    kidney = np.where(label == KIDNEY_LEFT, KIDNEY_LEFT, 0).astype(np.uint8)[::-1, ::-1].copy()
    save_nifti(make_image(data, affine, like=image), tmp / "image.nii.gz")
    save_nifti(make_image(kidney, affine), tmp / "label.nii.gz")
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    add_case(raw, "s0002", tmp / "image.nii.gz", tmp / "label.nii.gz")
    return raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Data prepared at RAS 1.5 mm, its store at [-200, 300] HU, a validated tiny model."""
    from neurosam3d.store.build import build_store
    from neurosam3d.training.config import config_from_dict
    from neurosam3d.training.datamodule import ManifestDataModule
    from neurosam3d.training.module import InteractiveSegmentationModule

    tmp = tmp_path_factory.mktemp("contract")
    raw = _lps_case(tmp)
    out = tmp / "data"
    prepare_dataset(
        config_for_layout("nnunet", raw), out, workers=1, spacing_mm=1.5, orientation="RAS"
    )
    build_store(out, ct_window=RECORD.ct_window)  # the statistics training normalises with
    manifest = out / "manifest.parquet"
    split = str(__import__("pandas").read_parquet(manifest)["split"].iloc[0])
    cfg = config_from_dict(
        {
            "data": {
                "root": str(out),
                "train_manifests": [str(manifest)],
                "val_manifests": [str(manifest)],
                "train_splits": [split],
                "val_splits": [split],
                "ct_window": [-200, 300],
                "orientation": "RAS",
                "spacing_mm": [1.5, 1.5, 1.5],
                "batch_size": 1,
            },
            "model": {"name": "tiny"},
            "clicks": {"val_rule": "center_error", "val_clicks": 1, "val_report": [1]},
            "trainer": {"monitor": "val/dice_1"},
        }
    )
    torch.manual_seed(0)
    module = InteractiveSegmentationModule(cfg.to_dict())
    tap = Tap(module.model)
    data = ManifestDataModule(cfg.data, module.model.img_size, seed=0)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=data)
    ckpt = tmp / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    runner = CliRunner()  # the other two formats, converted by the CLI (which keeps the record)
    for suffix in (".pth", ".safetensors"):
        result = runner.invoke(
            app, ["checkpoint", "convert", str(ckpt), str(ckpt.with_suffix(suffix))]
        )
        assert result.exit_code == 0, result.output
    row = data.val_set.table
    start = data.val_set.crop_origin(0, 0)
    image_path = out / row.image_path[0]
    return {
        "tmp": tmp,
        "ckpt": ckpt,
        "manifest": manifest,
        "image": image_path,
        "crop": tap.inputs[0][0, 0].numpy(),
        "start": start,
        "click": tap.points[0][0, 0].numpy() + start,  # working = stored voxels (RAS 1.5 mm)
        "logits": tap.logits[0],
        "bbox": (np.asarray(row.bbox_min[0]), np.asarray(row.bbox_max[0])),
        "record": module.preprocessing,
    }


def test_training_records_the_preprocessing_and_every_format_keeps_it(trained) -> None:
    from neurosam3d.model import read_preprocessing

    expected = Preprocessing(
        orientation="RAS", spacing_mm=1.5, ct_window=(-200, 300), input_size=64
    )
    assert trained["record"] == expected
    assert read_preprocessing(trained["ckpt"]) == (expected, "recorded")
    runner = CliRunner()
    for suffix in (".pth", ".safetensors"):
        dst = trained["tmp"] / f"model{suffix}"
        shown = runner.invoke(app, ["checkpoint", "inspect", str(dst), "--json"])
        record = json.loads(shown.output)["preprocessing"]
        assert record.pop("source") == "recorded"
        assert Preprocessing.from_dict(record) == expected
    release = torch.load(trained["tmp"] / "model.pth", weights_only=False)
    assert release["args"].neurosam3d_preprocessing["ct_window"] == [-200.0, 300.0]
    assert release["args"].img_size == 64  # upstream's own keys are still there


def test_one_implementation_identical_logits_on_every_path(trained, tmp_path) -> None:
    """Validation step, evaluate (Lightning, release, safetensors), predict, Predictor and the
    registered pyfunc: the same encoder input and the same first-click logits."""
    from neurosam3d.evaluation import evaluate
    from neurosam3d.evaluation.models import model_preprocessing, resolve_model
    from neurosam3d.inference import predict_file
    from neurosam3d.model import Predictor, load_checkpoint

    expected, click = trained["logits"], trained["click"]
    assert trained["crop"].std() > 0.5  # a real, normalised CT crop
    # each format is read by one path: release by evaluate, Lightning by predict, safetensors
    # by the Predictor and (registered) the pyfunc
    release = trained["tmp"] / "model.pth"
    model = resolve_model(release, device="cpu")
    tap = Tap(model)
    evaluation = tmp_path / "eval"
    report = evaluate(
        model,
        [trained["manifest"]],
        evaluation,
        clicks=1,
        click_rule="center_error",
        max_windows=1,
        device="cpu",
        amp="none",
        preprocessing=model_preprocessing(model, release)[0],
        worst_overlays=0,
    )
    np.testing.assert_array_equal(tap.points[0][0, 0].numpy() + trained["start"], click)
    np.testing.assert_allclose(tap.inputs[0][0, 0].numpy(), trained["crop"], atol=ATOL)
    torch.testing.assert_close(tap.logits[0], expected, atol=ATOL, rtol=0)
    assert report.summary["preprocessing"]["record"]["ct_window"] == [-200.0, 300.0]

    # predict: a second click mirrored through the target's box centre makes its window the
    # one evaluation and validation use; the first decoding sees the first click only
    lo, hi = trained["bbox"]
    mirror = lo + hi - 1 - click
    points = [",".join(str(int(v)) for v in click) + ",+", ",".join(map(str, mirror)) + ",+"]
    model = load_checkpoint(trained["ckpt"])
    tap = Tap(model)
    record = model_preprocessing(model, trained["ckpt"])[0]
    mask_path = tmp_path / "predict.nii.gz"
    result = predict_file(
        model,
        trained["image"],
        points,
        mask_path,
        modality="CT",
        preprocessing=record,
        max_windows=1,
        probabilities_out=tmp_path / "predict-probs.nii.gz",
    )
    torch.testing.assert_close(tap.logits[0], expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(tap.inputs[0][0, 0].numpy(), trained["crop"], atol=ATOL)

    # the CLI reads the record itself: the same probabilities
    cli = CliRunner().invoke(
        app,
        ["predict", str(trained["image"]), "--checkpoint", str(trained["ckpt"]),
         "--point", points[0], "--point", points[1], "--modality", "CT",
         "--max-windows", "1", "--out", str(tmp_path / "cli.nii.gz"),
         "--probabilities", str(tmp_path / "cli-probs.nii.gz")],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert "CT window [-200.0, 300.0]" in cli.output
    np.testing.assert_allclose(
        np.asanyarray(load_nifti(tmp_path / "cli-probs.nii.gz").dataobj),
        result.probabilities,
        atol=ATOL,
    )

    # the Predictor on the prepared window
    image = load_nifti(trained["image"])
    prepared = record.prepare(np.asanyarray(image.dataobj), "CT", image.affine)
    box = Box(tuple(int(v) for v in trained["start"]), (64, 64, 64))
    predictor = Predictor(load_checkpoint(trained["tmp"] / "model.safetensors"))
    predictor.set_window(prepared, box)
    first = predictor.predict(
        torch.tensor((click - trained["start"])[None, None], dtype=torch.float32),
        torch.ones(1, 1, dtype=torch.long),
    )
    torch.testing.assert_close(first.low_res_logits, expected, atol=ATOL, rtol=0)

    # the registered model, self-contained (this package is logged with it)
    pyfunc, local = _register(trained, tmp_path, evaluation)
    assert (Path(local) / "code" / "neurosam3d" / "transforms" / "preprocessing.py").is_file()
    requirements = (Path(local) / "requirements.txt").read_text()
    assert "torch==" in requirements and "torchio==" in requirements
    tap = Tap(pyfunc.unwrap_python_model().model)
    import pandas as pd

    answer = pyfunc.predict(
        pd.DataFrame({"image": [str(trained["image"])], "points": [";".join(points)]}),
        params={"max_windows": 1},
    )
    torch.testing.assert_close(tap.logits[0], expected, atol=ATOL, rtol=0)
    assert int(answer["voxels"][0]) == int(result.mask.sum())


def test_an_explicit_option_overrides_the_record_and_is_recorded(trained, tmp_path) -> None:
    from neurosam3d.evaluation import evaluate
    from neurosam3d.model import load_checkpoint

    model = load_checkpoint(trained["ckpt"])
    tap = Tap(model)
    evaluate(
        trained["ckpt"],
        [trained["manifest"]],
        tmp_path / "eval",
        clicks=1,
        click_rule="center_error",
        max_windows=1,
        device="cpu",
        amp="none",
        ct_window=(-1000.0, 1000.0),
        worst_overlays=0,
    )
    run = json.loads((tmp_path / "eval" / "run.json").read_text())
    assert run["preprocessing"]["source"] == "recorded"
    assert run["preprocessing"]["overridden"] == ["ct_window"]
    assert run["preprocessing"]["record"]["ct_window"] == [-1000.0, 1000.0]
    assert run["preprocessing"]["record"]["spacing_mm"] == [1.5, 1.5, 1.5]
    del model, tap


def _register(trained: dict, tmp: Path, evaluation: Path):
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from neurosam3d.registry import tags as T
    from neurosam3d.registry.register import register_model

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("contract", artifact_location=(tmp / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    summary = tmp / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "run_id": run_id,
                "experiment_id": experiment,
                "best_checkpoint": str(trained["ckpt"]),
                "tracking_uri": uri,
            }
        )
    )
    registration = register_model(
        tracking_uri=uri,
        name="contract",
        train_summary=summary,
        evaluation_dir=evaluation,
        lock_dir=tmp / "locks",
    )
    version = client.get_model_version("contract", registration.version)
    assert Preprocessing.from_json(version.tags[T.PREPROCESSING]) == trained["record"]
    source = client.get_model_version_download_uri("contract", registration.version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(tmp / "dl"), tracking_uri=uri
    )
    return mlflow.pyfunc.load_model(local), local


def test_prepare_and_evaluation_resampling_share_voxel_centres(tmp_path: Path) -> None:
    """The anisotropic T2* (0.5 x 0.5 x 7.5 mm, LAS): prepared at 1.5 mm (and RAS), and the
    raw volume on evaluation's working grid for the same record: the same voxels, each at the
    same world position, holding the same values."""
    from neurosam3d.transforms.geometry import sample_box

    t2s = SAMPLES / "amos_style" / "imagesVa" / "sct_t2s.nii.gz"
    cord = SAMPLES / "amos_style" / "labelsVa" / "sct_t2s.nii.gz"
    raw = write_nnunet(tmp_path / "Dataset931_T2s", {"spinal_cord": 1})
    add_case(raw, "t2s", t2s, cord)
    image = load_nifti(t2s)
    for orientation in (None, "RAS"):
        out = tmp_path / f"out-{orientation}"
        prepare_dataset(
            config_for_layout("nnunet", raw),
            out,
            workers=1,
            spacing_mm=1.5,
            orientation=orientation,
        )
        prepared = load_nifti(out / "Dataset931_T2s" / "imagesTr" / "t2s.nii.gz")
        record = Preprocessing(orientation=orientation, spacing_mm=1.5)
        grid = record.grid(image.affine, image.shape)
        assert prepared.shape == grid.shape
        index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
        index = index.reshape(-1, 3).astype(np.float64)
        world_prepared = index @ prepared.affine[:3, :3].T + prepared.affine[:3, 3]
        world_evaluation = index @ grid.affine[:3, :3].T + grid.affine[:3, 3]
        np.testing.assert_allclose(world_prepared, world_evaluation, atol=1e-3)  # mm
        # and evaluation of the prepared volume works on it as is: no second resampling
        assert not record.grid(prepared.affine, prepared.shape).resamples
        values = sample_box(np.asanyarray(image.dataobj), grid, Box((0, 0, 0), grid.shape))
        np.testing.assert_allclose(
            np.asanyarray(prepared.dataobj), values, rtol=1e-5, atol=1e-3 * values.std()
        )

"""The ``slice2d`` protocol end to end through the CLI, on the shipped volumes, with small
deterministic 2-D models saved in the two release formats (SAM: a bare state dict; SAM-Med2D:
``{"model": ...}``, adapters), beside a 3-D model in the same tables. Two targets (the T2* spinal
cord, stored LAS, 9 slices; the CT's right kidney, 19 slices) keep it lean.

The SAM-Med2D run uses the deterministic ``center_error`` rule so that both rounds can be
recomputed here independently: nibabel's canonical reorientation, scipy's 8-connected
components and distance transform, one :class:`Predictor2D` per slice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy import ndimage
from typer.testing import CliRunner

from neurosam3d.cli import app
from neurosam3d.evaluation import evaluate
from neurosam3d.evaluation.metrics import dice
from neurosam3d.evaluation.protocol import ProtocolConfig
from neurosam3d.model import build_model, load_checkpoint
from neurosam3d.model.sam2d import Predictor2D, Sam2DConfig
from tests.model.conftest import randomise

CLICKS = 2
#: SAM's layout at a small width (2 blocks, one global), detected as a "custom" configuration.
SMALL = dict(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    encoder_window_size=8,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_depth=1,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)
#: SAM's layout at 512 input (the transform is the same at any size; 1024 costs 4 x the
#: pixels) and SAM-Med2D's 256 input with adapters.
SAM_LIKE = Sam2DConfig(img_size=512, patch_size=32, **SMALL)
MED2D_LIKE = Sam2DConfig(img_size=256, patch_size=16, encoder_adapters=True, **SMALL)


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


#: Seeds and scales of weights whose masks on these slices are neither empty nor full.
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    sam = folder / "sam_vit_b_01ec64.pth"
    torch.save(randomise(build_model(SAM_LIKE), seed=5, scale=0.2).state_dict(), sam)
    med2d = folder / "sam-med2d_b.pth"
    torch.save({"model": randomise(build_model(MED2D_LIKE), seed=6, scale=0.2).state_dict()}, med2d)
    return {"SAM": sam, "SAM-Med2D": med2d}


@pytest.fixture(scope="module")
def manifest(eval_manifest) -> Path:
    """The shipped-sample manifest without the liver (30 slices): two targets, two cases."""
    table = pq.read_table(eval_manifest)
    rows = [r for r in table.to_pylist() if r["class_name"] != "liver"]
    path = eval_manifest.with_name("manifest_slice2d.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return path


@pytest.fixture(scope="module")
def runs(checkpoints, manifest, tmp_path_factory) -> dict[str, Path]:
    """One evaluation folder per model: SAM and SAM-Med2D (CLI, slice2d), a 3-D model (full)."""
    root = tmp_path_factory.mktemp("slice2d")
    out = {}
    for name, rule in (("SAM", "random_error"), ("SAM-Med2D", "center_error")):
        out[name] = root / name
        _run(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoints[name]),
                "--protocol",
                "slice2d",
                "--manifest",
                str(manifest),
                "--out",
                str(out[name]),
                "--clicks",
                str(CLICKS),
                "--click-rule",
                rule,
                "--model-name",
                name,
                "--class-masks",
            ]
        )
    out["3D"] = root / "3D"
    model = randomise(build_model("tiny"), seed=5)
    evaluate(model, [manifest], out["3D"], clicks=CLICKS, model_name="tiny3d")
    return out


def _canonical(path: Path) -> np.ndarray:
    return np.asarray(nib.as_closest_canonical(nib.load(path)).dataobj)


def test_rows_count_the_axial_slices_that_contain_the_target(runs, manifest):
    results = pd.read_parquet(runs["SAM"] / "results.parquet")
    rows = pd.read_parquet(manifest)
    assert len(results) == len(rows) * CLICKS
    assert set(results["protocol"]) == {"slice2d"} and set(results["model"]) == {"SAM"}
    for row in rows.itertuples(index=False):
        reference = _canonical(manifest.parent / row.mask_path) > 0
        slices = int(reference.any(axis=(0, 1)).sum())  # N: axial (RAS) slices with the target
        mine = results[results["class_name"] == row.class_name]
        assert (mine["windows"] == slices).all() and (mine["windows_predicted"] == slices).all()
        assert (mine["seeded_clicks"] == 0).all()
        assert (mine["ref_voxels"] == row.voxel_count).all()
        # Slices without the target predict background: nothing outside the target's slices.
        written = _canonical(
            runs["SAM"] / f"predictions/{row.dataset}/{row.case_id}/{row.class_name}.nii.gz"
        )
        assert not written[:, :, ~reference.any(axis=(0, 1))].any()
        assert written.any()
    _, _, *rows = (runs["SAM"] / "tables/categories.md").read_text().splitlines()
    assert [r.split(" | ")[:2] for r in rows] == [
        ["| SAM", "N points"],
        ["| SAM", f"{CLICKS}N points"],
        ["| SAM", "AUC"],
    ]
    summary = json.loads((runs["SAM"] / "summary.json").read_text())
    assert summary["protocol"]["protocol"] == "slice2d"
    assert summary["protocol"]["nsd_tolerance_mm"] == 2.0


def _deepest(region: np.ndarray) -> tuple[int, int]:
    padded = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return np.unravel_index(int(np.argmax(padded)), padded.shape)  # type: ignore[return-value]


def _largest(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return mask, 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1, int(sizes.max())


def _center_error_click(target: np.ndarray, pred: np.ndarray | None) -> tuple[int, int, int]:
    """(row, col, label): the CVPR-2025 rule on one slice, written with scipy."""
    if pred is None or not (target ^ pred).any():
        row, col = _deepest(_largest(target)[0])
        return row, col, 1
    fn, fn_size = _largest(target & ~pred)
    fp, fp_size = _largest(pred & ~target)
    region, label = (fn, 1) if fn_size >= fp_size else (fp, 0)
    row, col = _deepest(region)
    return row, col, label


def _independent(model, image_path: Path, mask_path: Path) -> list[np.ndarray]:
    """Both rounds slice by slice in canonical RAS: the prediction after each round."""
    data = _canonical(image_path).astype(np.float32)
    reference = _canonical(mask_path) > 0
    rounds = [np.zeros(reference.shape, bool) for _ in range(CLICKS)]
    for k in np.flatnonzero(reference.any(axis=(0, 1))):
        pixels = data[:, :, k]
        pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min() + 1e-10) * 255.0
        predictor = Predictor2D(model)
        predictor.set_image(torch.from_numpy(pixels))
        points, labels, logits, pred = [], [], None, None
        for r in range(CLICKS):
            row, col, label = _center_error_click(reference[:, :, k], pred)
            points.append([float(col), float(row)])
            labels.append(label)
            out = predictor.predict(
                torch.tensor([points]), torch.tensor([labels]), mask_input=logits, multimask=r == 0
            )
            best = int(out.iou[0].argmax())
            logits = out.low_res_logits[:, best : best + 1]
            pred = out.mask[0, best].numpy()
            rounds[r][:, :, k] = pred
    return rounds


def test_both_rounds_match_an_independent_slice_loop(runs, checkpoints, manifest):
    """SAM-Med2D (center_error): the first click in each slice's largest component with the
    highest-IoU mask, then the error region's click with the logits fed back; stacked and
    mapped back to the original grid (t2s is stored LAS: the R axis is flipped)."""
    model = load_checkpoint(checkpoints["SAM-Med2D"])
    results = pd.read_parquet(runs["SAM-Med2D"] / "results.parquet")
    root = manifest.parent
    for dataset, case, name in (("SctT2s", "t2s", "spinal_cord"),):
        mask_path = root / f"{dataset}/labelsTs/{name}/{case}.nii.gz"
        rounds = _independent(model, root / f"{dataset}/imagesTs/{case}.nii.gz", mask_path)
        reference = _canonical(mask_path) > 0
        written = _canonical(runs["SAM-Med2D"] / f"predictions/{dataset}/{case}/{name}.nii.gz") > 0
        prompted = reference.any(axis=(0, 1))
        for predicted in rounds:  # neither empty nor full: the comparison below means something
            assert 0 < predicted.sum() < predicted[:, :, prompted].size
        differing = int((written ^ rounds[-1]).sum())
        assert differing <= max(2, 0.002 * rounds[-1].sum()), (name, differing)
        mine = results[results["class_name"] == name].sort_values("click")
        for r in range(CLICKS):
            assert mine["dice"].iloc[r] == pytest.approx(dice(rounds[r], reference), abs=2e-3)
        assert not np.array_equal(rounds[0], rounds[1])  # round 2 changed the prediction


def test_compare_tabulates_the_2d_models_beside_the_3d_model(runs, tmp_path):
    out = tmp_path / "compare"
    args = ["evaluate", "--out", str(out)]
    for name in ("3D", "SAM", "SAM-Med2D"):
        args += ["--compare", str(runs[name])]
    printed = _run(args)
    table = pd.read_csv(out / "tables/categories.csv")
    assert list(zip(table["Model"], table["Prompt"], strict=True)) == [
        ("SAM", "N points"),
        ("SAM", f"{CLICKS}N points"),
        ("SAM", "AUC"),
        ("SAM-Med2D", "N points"),
        ("SAM-Med2D", f"{CLICKS}N points"),
        ("SAM-Med2D", "AUC"),
        ("tiny3d", "1 point"),
        ("tiny3d", f"{CLICKS} points"),
        ("tiny3d", "AUC"),
    ]
    assert "| SAM-Med2D | N points |" in printed
    combined = pd.read_parquet(out / "results.parquet")
    for name in ("SAM", "SAM-Med2D"):
        alone = pd.read_parquet(runs[name] / "results.parquet")
        pd.testing.assert_frame_equal(
            combined[combined["model"] == name].reset_index(drop=True), alone
        )
    assert (out / "dice_vs_clicks.png").is_file()


def test_compare_refuses_other_targets_and_one_model_twice(runs, tmp_path):
    twice = CliRunner().invoke(
        app, ["evaluate", "--out", str(tmp_path / "a")] + ["--compare", str(runs["SAM"])] * 2
    )
    assert twice.exit_code != 0 and "both hold model 'SAM'" in twice.output
    other = tmp_path / "other"
    shutil.copytree(runs["SAM-Med2D"], other)
    record = json.loads((other / "run.json").read_text())
    record["manifest_sha256"] = "0" * 64
    (other / "run.json").write_text(json.dumps(record))
    mixed = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--out",
            str(tmp_path / "b"),
            "--compare",
            str(runs["SAM"]),
            "--compare",
            str(other),
        ],
    )
    assert mixed.exit_code != 0 and "evaluated on other targets" in mixed.output


def test_models_and_protocols_that_do_not_go_together_are_refused(checkpoints, manifest, tmp_path):
    with pytest.raises(ValueError, match="slice2d protocol evaluates 2-D models"):
        evaluate(build_model("tiny"), [manifest], tmp_path / "a", protocol="slice2d")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(checkpoints["SAM"]),
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code != 0 and "use --protocol slice2d" in result.output
    assert "sam_vit_b_01ec64.pth" in result.output
    with pytest.raises(ValueError, match="fixes its own grid"):
        ProtocolConfig(protocol="slice2d", orientation="RAS")

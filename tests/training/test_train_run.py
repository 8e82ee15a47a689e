"""End to end: `neurosam3d train` logs to MLflow and writes a summary; a resumed run continues."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from neurosam3d.cli import app

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-cpu.yaml"


def _fast(manifest: Path) -> list[str]:
    """Overrides that make the demo configuration take seconds."""
    return [
        f"data.root={manifest.parent}",
        f"data.train_manifests=[{manifest}]",
        f"data.val_manifests=[{manifest}]",
        "data.classes=[liver, spleen]",
        "data.batch_size=1",
        "data.val_max_items=2",
        "data.augment=[]",
        "clicks.num_clicks=3",
        "clicks.val_clicks=2",
        "clicks.val_report=[1, 2]",
        "trainer.monitor=val/dice_2",
        "tracking.overlays=1",
        "trainer.log_every_n_steps=1",
        "trainer.max_steps=2",
        "trainer.val_every_n_steps=2",
    ]


@pytest.fixture(scope="module")
def first_run(
    ct_manifest: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict, pytest.MonkeyPatch]:
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("NEUROSAM3D_HOME", str(home))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = home / "train"
    args = ["train", "--config", str(CONFIG), "--out", str(out), "--device", "cpu"]
    *items, steps, every = _fast(ct_manifest)
    for item in items:
        args += ["--set", item]
    args += ["--overrides", f"{steps} {every}"]  # the params.yaml form
    handlers = list(logging.getLogger().handlers)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    for handler in set(logging.getLogger().handlers) - set(handlers):
        logging.getLogger().removeHandler(handler)  # it writes to the runner's closed stream
    assert result.exit_code == 0, result.output
    yield home, json.loads((out / "summary.json").read_text()), patch
    patch.undo()


def test_run_is_tracked_in_mlflow_with_checkpoints(first_run: tuple[Path, dict, object]) -> None:
    from mlflow import MlflowClient

    home, summary, _ = first_run
    assert summary["global_step"] == 2
    assert summary["tracking_uri"] == f"sqlite:///{home}/mlflow/mlflow.db"
    assert set(summary["val_dice"]) == set(summary["baseline_val_dice"]) == {"1", "2"}
    assert Path(summary["best_checkpoint"]).is_file() and Path(summary["last_checkpoint"]).is_file()
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert "train/loss" in run.data.metrics and "val/dice_2" in run.data.metrics
    assert len(run.data.tags["neurosam3d.manifest_sha256"]) == 64
    assert run.data.params["config/trainer/max_steps"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "overlays", "config.yaml", "summary.json"} <= artifacts
    ckpts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    assert str(home / "mlflow" / "artifacts") in run.info.artifact_uri


def test_checkpoint_keys_are_the_release_keys_under_model(
    first_run: tuple[Path, dict, object],
) -> None:
    from neurosam3d.model import build_model, load_checkpoint

    _, summary, _ = first_run
    state = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    expected = {f"model.{k}" for k in build_model("tiny").state_dict()}
    assert set(state["state_dict"]) == expected
    loaded = load_checkpoint(summary["best_checkpoint"])  # architecture detected from the keys
    assert loaded.img_size == 64
    best = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(loaded.state_dict()[key], best["state_dict"][f"model.{key}"])


def _strings(value: object) -> list[str]:
    """Every string inside a checkpoint's nested dicts, lists and tuples."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def test_the_same_training_writes_the_same_checkpoint_bytes_in_another_folder(
    first_run: tuple[Path, dict, object], ct_manifest: Path
) -> None:
    """Checkpoints are DVC outputs whose hashes git keeps (dvc.lock): they hold no MLflow run
    id, no absolute path and no clock; the run id is in the uncached ``run.json``."""
    from neurosam3d.training import load_config, train
    from neurosam3d.training.module import MLFLOW_RUN_ID_KEY

    home, summary, _ = first_run
    cfg = load_config(CONFIG, _fast(ct_manifest))
    again = train(cfg, home / "elsewhere" / "train")
    assert again.run_id != summary["run_id"]
    first = Path(summary["last_checkpoint"]).parent
    for name in ("last.ckpt", Path(summary["best_checkpoint"]).name):
        assert (first / name).read_bytes() == (
            Path(again.last_checkpoint).parent / name
        ).read_bytes()
    saved = torch.load(first / "last.ckpt", map_location="cpu", weights_only=True)
    assert MLFLOW_RUN_ID_KEY not in saved
    assert not [s for s in _strings(saved) if str(home) in s or summary["run_id"] in s]
    receipt = json.loads((first.parent / "run.json").read_text())
    assert receipt["run_id"] == summary["run_id"]
    assert receipt["tracking_uri"] == summary["tracking_uri"]


def test_resume_continues_step_optimiser_and_mlflow_run(
    first_run: tuple[Path, dict, object], ct_manifest: Path
) -> None:
    from neurosam3d.training import load_config, train

    home, summary, _ = first_run
    saved = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2
    cfg = load_config(CONFIG, [*_fast(ct_manifest), "trainer.max_steps=3"])
    resumed = train(cfg, home / "resumed", resume=summary["last_checkpoint"])
    assert resumed.global_step == 3 and resumed.run_id == summary["run_id"]
    assert len(list(Path(resumed.best_checkpoint).parent.glob("best-*.ckpt"))) == 1
    after = torch.load(resumed.last_checkpoint, map_location="cpu", weights_only=True)
    state_before = saved["optimizer_states"][0]["state"]
    state_after = after["optimizer_states"][0]["state"]
    assert all(int(s["step"]) == 2 for s in state_before.values())
    assert all(int(s["step"]) == 3 for s in state_after.values())  # Adam continued, not reset
    assert after["lr_schedulers"][0]["last_epoch"] == 3


def _invoke(args: list[str]) -> object:
    handlers = list(logging.getLogger().handlers)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    for handler in set(logging.getLogger().handlers) - set(handlers):
        logging.getLogger().removeHandler(handler)
    return result


def test_used_out_is_refused_unless_resuming(
    first_run: tuple[Path, dict, object], ct_manifest: Path
) -> None:
    home, _, _ = first_run
    out = home / "train"
    before = (out / "summary.json").read_bytes()
    args = ["train", "--config", str(CONFIG), "--out", str(out), "--device", "cpu"]
    for item in _fast(ct_manifest):
        args += ["--set", item]
    result = _invoke(args)
    assert result.exit_code == 2
    assert "already holds a training run" in result.output
    assert "--resume" in result.output and "Traceback" not in result.output
    assert (out / "summary.json").read_bytes() == before  # nothing was touched


def test_missing_manifest_is_named_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "work" / "data" / "manifest.parquet"
    args = ["train", "--config", str(CONFIG), "--out", str(tmp_path / "out")]
    args += ["--set", f"data.train_manifests=[{missing}]", "--set", f"data.root={missing.parent}"]
    result = _invoke(args)
    assert result.exit_code == 2
    assert f"{missing}: manifest not found" in " ".join(result.output.split())
    assert "neurosam3d prepare" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_best_checkpoint_names_with_a_version_suffix_are_parsed() -> None:
    from neurosam3d.training.run import _best_step

    assert _best_step(Path("best-300.ckpt")) == 300
    assert _best_step(Path("best-300-v1.ckpt")) == 300
    with pytest.raises(ValueError, match="not a best"):
        _best_step(Path("last.ckpt"))


def test_only_global_rank_zero_creates_the_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    from neurosam3d.training.run import is_rank_zero

    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's DDP launcher, second process
    assert not is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "3")  # torchrun
    assert not is_rank_zero()


def test_last_checkpoint_is_written_at_every_validation(ct_manifest: Path, tmp_path: Path) -> None:
    import lightning as L

    from neurosam3d.training import load_config
    from neurosam3d.training.checkpoints import LastCheckpoint
    from neurosam3d.training.datamodule import ManifestDataModule
    from neurosam3d.training.module import InteractiveSegmentationModule

    seen: list[int] = []
    last = tmp_path / "checkpoints" / "last.ckpt"

    class Record(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seen.append(torch.load(last, map_location="cpu", weights_only=True)["global_step"])

    cfg = load_config(CONFIG, [*_fast(ct_manifest), "data.val_max_items=1"])
    trainer = L.Trainer(
        max_steps=2,
        val_check_interval=1,
        check_val_every_n_epoch=None,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[LastCheckpoint(last, every_n_steps=None), Record()],
    )
    module = InteractiveSegmentationModule(cfg.to_dict())
    trainer.fit(module, datamodule=ManifestDataModule(cfg.data, 64, cfg.seed))
    assert seen == [1, 2]  # whether or not the validation improved on the best
    assert not list(last.parent.glob(".*tmp*"))  # written through a renamed temporary


def test_a_checkpoint_from_another_store_registers_into_a_new_run(
    first_run: tuple[Path, dict, object], ct_manifest: Path, tmp_path: Path
) -> None:
    """What `dvc pull` restores (checkpoints, no summary of this store) registers, idempotently."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    from neurosam3d.evaluation import evaluate
    from neurosam3d.registry.register import REGISTERED_CHECKPOINT_TAG, register_model

    _, summary, _ = first_run
    checkpoint = Path(summary["last_checkpoint"])
    rows = pq.read_table(ct_manifest)
    one = tmp_path / "spleen_val.parquet"  # one target keeps the test to seconds
    keep = pc.and_(pc.equal(rows["split"], "Val"), pc.equal(rows["class_name"], "spleen"))
    pq.write_table(rows.filter(keep), one)
    evaluation = tmp_path / "eval"
    evaluate(
        checkpoint,
        [one],
        evaluation,
        clicks=1,
        worst_overlays=0,
        device="cpu",
        data_root=ct_manifest.parent,
    )
    uri = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    (tmp_path / "other").mkdir()
    train_summary = Path(summary["last_checkpoint"]).parents[1] / "summary.json"
    first = register_model(
        tracking_uri=uri,
        name="pulled",
        train_summary=train_summary,  # names the first store, not this one
        evaluation_dir=evaluation,
        lock_dir=tmp_path / "locks",
        checkpoint=checkpoint,
    )
    client = MlflowClient(uri)
    run = client.get_run(first.run_id)
    assert first.created and first.run_id != summary["run_id"]
    assert run.data.tags[REGISTERED_CHECKPOINT_TAG] == first.checkpoint_sha256
    assert client.get_experiment(run.info.experiment_id).name == "neurosam3d-demo"
    again = register_model(
        tracking_uri=uri,
        name="pulled",
        train_summary=None,
        evaluation_dir=evaluation,
        lock_dir=tmp_path / "locks",
        checkpoint=checkpoint,
    )
    assert (again.created, again.version, again.run_id) == (False, first.version, first.run_id)


def test_checkpoints_kept_by_dvc_are_listed_not_copied(
    first_run: tuple[Path, dict, object], ct_manifest: Path
) -> None:
    import hashlib

    from mlflow import MlflowClient

    from neurosam3d.training import load_config, train

    home, summary, _ = first_run
    cfg = load_config(CONFIG, [*_fast(ct_manifest), "tracking.log_checkpoints=false"])
    run = train(cfg, home / "listed")
    client = MlflowClient(summary["tracking_uri"])
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert "checkpoints" not in artifacts and "checkpoints.json" in artifacts
    listing = json.loads(
        Path(client.download_artifacts(run.run_id, "checkpoints.json")).read_text()
    )
    last = Path(run.last_checkpoint)
    assert {
        "name": "last.ckpt",
        "path": str(last),
        "bytes": last.stat().st_size,
        "sha256": hashlib.sha256(last.read_bytes()).hexdigest(),
    } in listing
    assert {e["name"] for e in listing} == {"last.ckpt", Path(run.best_checkpoint).name}

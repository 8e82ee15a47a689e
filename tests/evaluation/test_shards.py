"""Sharded runs, resume and summarise; seen/unseen read from the checkpoint.

Data: the shipped spinal-cord sample (samples/amos_style: a T2 and a T2* case, manual labels),
prepared by ``neurosam3d prepare``; the tiny model with fixed random weights, saved as a
Lightning-style checkpoint that records its training pairs as ``neurosam3d train`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from neurosam3d.cli import app
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.data.shards import parse_shard
from neurosam3d.evaluation import evaluate
from neurosam3d.evaluation.api import EvaluationStateError, summarise
from neurosam3d.evaluation.models import resolve_amp, resolve_device
from neurosam3d.model import build_model
from neurosam3d.taxonomy import TRAINED_PAIRS_KEY

CLICKS = 2


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare_dataset("sample_amos_style_cord", out, workers=1)
    return out / "manifest.parquet"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, TRAINED_PAIRS_KEY: [["SCTPaired", "spinal_cord"]]}, path)
    return path


@pytest.fixture(scope="module")
def unsharded(prepared, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    # Threads for targets (workers=2) must not change a byte either.
    return evaluate(
        checkpoint, [prepared], out, clicks=CLICKS, model_name="tiny", device="cpu", workers=2
    )


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    return result


def test_two_shards_and_summarise_give_the_unsharded_tables(
    unsharded, prepared, checkpoint, tmp_path
):
    out = tmp_path / "sharded"
    common = [
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--manifest",
        str(prepared),
        "--out",
        str(out),
        "--clicks",
        str(CLICKS),
        "--model-name",
        "tiny",
        "--device",
        "cpu",
    ]
    first = _invoke([*common, "--shard", "1/2"])
    assert first.exit_code == 0, first.output
    assert "--summarise" in first.output
    parts = sorted(p.relative_to(out) for p in (out / "parts").rglob("*.parquet"))
    assert len(parts) == 1  # one of the two cases
    incomplete = _invoke(["evaluate", "--summarise", str(out)])
    assert incomplete.exit_code != 0 and "1 of 2 cases" in incomplete.output
    second = _invoke([*common, "--shard", "2/2"])
    assert second.exit_code == 0, second.output
    done = _invoke(["evaluate", "--summarise", str(out)])
    assert done.exit_code == 0, done.output
    whole = unsharded.out_dir
    assert (out / "results.parquet").read_bytes() == unsharded.results.read_bytes()
    for table in sorted((whole / "tables").iterdir()):
        assert (out / "tables" / table.name).read_bytes() == table.read_bytes(), table.name
    assert (out / "summary.json").read_bytes() == unsharded.summary_path.read_bytes()
    for path in unsharded.predictions:
        assert (out / path.relative_to(whole)).read_bytes() == path.read_bytes()


def test_rows_record_the_protocol_and_seen_pairs_come_from_the_checkpoint(unsharded):
    results = pd.read_parquet(unsharded.results)
    assert set(results["protocol"]) == {"full"}
    assert (results["nsd_tolerance_mm"] == 2.0).all()
    # The checkpoint records (SCTPaired, spinal_cord) as trained: every row is seen.
    assert results["seen"].all()
    # Every window the target or its prediction touches is predicted after every click.
    assert (results["windows_predicted"] == results["windows"]).all()
    assert (results["seeded_clicks"] >= 0).all()


def test_resume_skips_written_cases_and_other_settings_are_refused(unsharded, prepared, checkpoint):
    out = unsharded.out_dir
    part = next((out / "parts").rglob("*.parquet"))
    os.utime(part, (1_000_000_000, 1_000_000_000))
    evaluate(checkpoint, [prepared], out, clicks=CLICKS, model_name="tiny", resume=True)
    assert part.stat().st_mtime == 1_000_000_000  # not rewritten
    with pytest.raises(EvaluationStateError, match=r"other settings .*protocol.*cannot resume"):
        evaluate(checkpoint, [prepared], out, clicks=CLICKS, seed=1, model_name="tiny", resume=True)
    with pytest.raises(EvaluationStateError, match="not an evaluation output folder"):
        summarise(prepared.parent)


def test_sam_med3d_protocol_from_the_cli(prepared, checkpoint, tmp_path):
    out = tmp_path / "sam"
    val_only = tmp_path / "val_only.parquet"
    rows = pq.read_table(prepared)
    pq.write_table(rows.filter(pc.not_equal(rows["split"], "Tr")), val_only)
    result = _invoke(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--manifest",
            str(prepared),
            "--out",
            str(out),
            "--clicks",
            "1",
            "--protocol",
            "sam-med3d",
            "--training-manifest",
            str(val_only),
        ]
    )
    assert result.exit_code == 0, result.output
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["protocol"]) == {"sam-med3d"}
    assert (results["nsd_tolerance_mm"] == 1.0).all()
    # --training-manifest overrides the checkpoint's pairs: it has no Tr rows, nothing is seen.
    assert not results["seen"].any()


def test_training_records_its_pairs_in_the_checkpoint(prepared):
    from neurosam3d.training.config import load_config
    from neurosam3d.training.module import InteractiveSegmentationModule
    from neurosam3d.training.trained_pairs import trained_pairs

    cfg = load_config(
        Path(__file__).resolve().parents[2] / "configs/demo-cpu.yaml",
        [f"data.root={prepared.parent}", f"data.train_manifests=[{prepared}]"],
    )
    pairs = trained_pairs(cfg.data)
    assert pairs == [["SCTPaired", "spinal_cord"]]
    module = InteractiveSegmentationModule(cfg.to_dict())
    module.trained_pairs = pairs
    saved: dict = {}
    module.on_save_checkpoint(saved)
    assert saved[TRAINED_PAIRS_KEY] == pairs
    restored = InteractiveSegmentationModule(cfg.to_dict())
    restored.on_load_checkpoint(saved)
    assert restored.trained_pairs == pairs


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ValueError, match="I/N"):
        parse_shard(text)


def test_device_and_amp_resolution():
    assert resolve_amp("auto", "cpu") is None
    assert resolve_amp("auto", "cuda") is torch.bfloat16
    assert resolve_amp("bf16", "cpu") is torch.bfloat16
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="auto, bf16 or none"):
        resolve_amp("fp8", "cuda")

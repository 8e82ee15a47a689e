"""``evaluate`` end to end on real volumes with the tiny model: artifacts, final-click scoring,
scores on the original grid, and identical outputs for the same model, manifest and seed."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from neurosam3d.data.schema import MANIFEST_SCHEMA
from neurosam3d.evaluation import evaluate
from neurosam3d.evaluation.metrics import dice
from neurosam3d.evaluation.results import RESULTS_SCHEMA
from neurosam3d.model import build_model

CLICKS = 3


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


#: Splits of the training manifest's rows: only the Tr row makes its (dataset, class) seen.
TRAINING_SPLITS = {"liver": "Tr", "kidney_right": "Val", "spinal_cord": "Ts"}


@pytest.fixture(scope="module")
def training_manifest(eval_manifest, tmp_path_factory):
    """A combined manifest (Tr, Val and Ts rows) such as ``prepare`` writes."""
    rows = pq.read_table(eval_manifest).to_pylist()
    for row in rows:
        row["split"] = TRAINING_SPLITS[row["class_name"]]
    path = tmp_path_factory.mktemp("train") / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    return path


@pytest.fixture(scope="module")
def report(tiny_model, eval_manifest, training_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(
        tiny_model,
        [eval_manifest],
        out,
        clicks=CLICKS,
        seed=7,
        training_manifest=training_manifest,
        model_name="tiny",
        class_masks=True,
    )


def test_artifacts_and_results_rows(report, eval_manifest):
    results = pd.read_parquet(report.results)
    assert list(results.columns) == RESULTS_SCHEMA.names
    manifest = pd.read_parquet(eval_manifest)
    assert len(results) == len(manifest) * CLICKS
    assert set(results["click"]) == set(range(1, CLICKS + 1))
    # Seen only where the class has Tr rows in the training manifest, not Val/Ts-only classes.
    seen = results.groupby("class_name")["seen"].agg(["min", "max"])
    assert (seen["min"] == seen["max"]).all()
    assert seen["max"].to_dict() == {c: s == "Tr" for c, s in TRAINING_SPLITS.items()}
    assert (results["seed"] == 7).all() and (results["click_rule"] == "random_error").all()
    assert results["dice"].between(0, 1).all() and results["nsd"].between(0, 1).all()
    ref_voxels = results.groupby("class_name")["ref_voxels"].first().to_dict()
    assert ref_voxels == dict(zip(manifest["class_name"], manifest["voxel_count"], strict=True))
    for name in ("categories", "by_class", "by_dataset", "by_modality", "by_category"):
        assert (report.out_dir / "tables" / f"{name}.csv").is_file()
        assert (report.out_dir / "tables" / f"{name}.md").is_file()
    header = (report.out_dir / "tables" / "categories.md").read_text().splitlines()[0]
    assert header.startswith("| Model | Prompt | A&T | Bone | Brain | Cardiac | Gland | Muscle |")
    assert report.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report.overlays) == len(manifest) and all(p.is_file() for p in report.overlays)


def test_summary_scores_the_final_click(report):
    results = pd.read_parquet(report.results)
    summary = json.loads(report.summary_path.read_text())
    last = results[results["click"] == CLICKS]
    assert summary["mean_dice"][str(CLICKS)] == pytest.approx(last["dice"].mean())
    assert summary["gate_clicks"] == CLICKS  # fewer than 5 clicks run: the last one
    by_category = last.groupby("category")["dice"].mean().to_dict()
    assert summary["category_dice"] == pytest.approx(by_category)
    assert summary["targets"] == len(last)


def test_scores_are_those_of_the_written_prediction_on_the_original_grid(report, eval_manifest):
    """The t2s case (LAS, anisotropic) has one class: its saved mask must reproduce the Dice."""
    results = pd.read_parquet(report.results)
    row = results[(results["class_name"] == "spinal_cord") & (results["click"] == CLICKS)].iloc[0]
    root = eval_manifest.parent
    reference = np.asarray(nib.load(root / "SctT2s/labelsTs/spinal_cord/t2s.nii.gz").dataobj) > 0
    written = nib.load(report.out_dir / "predictions/SctT2s/t2s/spinal_cord.nii.gz")
    original = nib.load(root / "SctT2s/imagesTs/t2s.nii.gz")
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-6)
    prediction = np.asarray(written.dataobj) > 0
    assert dice(prediction, reference) == pytest.approx(row["dice"])
    assert int(prediction.sum()) == row["pred_voxels"]
    labels = json.loads((report.out_dir / "predictions/SctT2s/t2s.json").read_text())
    assert labels == {"1": "spinal_cord"}


def test_same_model_manifest_and_seed_give_identical_files(
    report, tiny_model, eval_manifest, training_manifest, tmp_path
):
    runner = CliRunner()
    checkpoint = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), checkpoint)
    again = tmp_path / "again"
    from neurosam3d.cli import app

    result = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--arch",
            "tiny",
            "--manifest",
            str(eval_manifest),
            "--training-manifest",
            str(training_manifest),
            "--model-name",
            "tiny",
            "--out",
            str(again),
            "--clicks",
            str(CLICKS),
            "--seed",
            "7",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (again / "results.parquet").read_bytes() == report.results.read_bytes()
    for table in sorted((report.out_dir / "tables").iterdir()):
        assert (again / "tables" / table.name).read_bytes() == table.read_bytes()
    assert (again / "summary.json").read_bytes() == report.summary_path.read_bytes()
    for path in [report.plot, *report.overlays, *report.predictions]:
        assert (again / path.relative_to(report.out_dir)).read_bytes() == path.read_bytes(), path
    # A different seed gives different clicks.
    other = evaluate(
        tiny_model, [eval_manifest], tmp_path / "other", clicks=CLICKS, seed=8, model_name="tiny"
    )
    assert not pd.read_parquet(other.results)[["dice"]].equals(
        pd.read_parquet(report.results)[["dice"]]
    )

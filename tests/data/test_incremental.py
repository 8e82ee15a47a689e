"""Reruns redo exactly the cases whose inputs changed, remove outputs that no longer have a
source, and give the same bytes whatever the worker count."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurosam3d.data.config import config_for_layout
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.io.nifti import load_nifti
from tests.data.conftest import add_case, files_under, save_array, write_nnunet


@pytest.fixture
def dataset(tmp_path: Path, samples_dir: Path) -> Path:
    """Three cases of the real MSD spinal-cord sample, as nnU-Net (cord white/grey matter)."""
    task = samples_dir / "msd" / "Task101_SpinalCordSCT"
    image = load_nifti(task / "imagesTr" / "sct_001.nii.gz")
    t2star = tmp_path / "t2star.nii.gz"
    save_array(
        t2star, np.asanyarray(image.dataobj)[..., 0].copy(), task / "labelsTr/sct_001.nii.gz"
    )
    root = write_nnunet(tmp_path / "raw" / "Dataset930_Inc", {"wm": 1, "gm": 2})
    for case_id in ("a", "b", "c"):
        add_case(root, case_id, t2star, task / "labelsTr" / "sct_001.nii.gz")
    return root


def _run(root: Path, out: Path, workers: int = 1):
    return prepare_dataset(config_for_layout("nnunet", root), out, workers=workers)


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*.nii.gz")
    }


def test_only_changed_cases_are_redone(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _run(dataset, out)
    assert (first.prepared, first.skipped, first.rows) == (3, 0, 6)
    before = _mtimes(out)
    label = dataset / "labelsTr" / "b.nii.gz"
    only_wm = np.asanyarray(load_nifti(label).dataobj).copy()
    only_wm[only_wm == 2] = 0
    save_array(label, only_wm, label)
    second = _run(dataset, out)
    assert (second.prepared, second.skipped, second.rows) == (1, 2, 5)
    after = _mtimes(out)
    assert not (out / "Dataset930_Inc/labelsTr/gm/b.nii.gz").exists()  # stale mask removed
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"Dataset930_Inc/imagesTr/b.nii.gz", "Dataset930_Inc/labelsTr/wm/b.nii.gz"}


def test_vanished_case_and_deleted_output(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(dataset, out)
    (dataset / "imagesTr" / "c_0000.nii.gz").unlink()
    (dataset / "labelsTr" / "c.nii.gz").unlink()
    (out / "Dataset930_Inc/labelsTr/wm/a.nii.gz").unlink()
    report = _run(dataset, out)
    assert (report.prepared, report.skipped) == (1, 1)  # a redone (output missing), b skipped
    assert sorted(p.name for p in (out / "Dataset930_Inc").rglob("*.nii.gz")) == [
        "a.nii.gz",
        "a.nii.gz",
        "a.nii.gz",
        "b.nii.gz",
        "b.nii.gz",
        "b.nii.gz",
    ]
    assert not list((out / ".prepare" / "Dataset930_Inc").glob("c.*"))


def test_leftover_temporaries_are_removed(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(dataset, out)
    leftovers = [
        out / ".manifest.parquet.tmp-1-ab",
        out / "manifests" / ".Dataset930_Inc_Tr.parquet.tmp-1-ab",
        out / "Dataset930_Inc" / "labelsTr" / "wm" / ".a.nii.gz.tmp-1-ab",
        out / ".prepare" / "Dataset930_Inc" / ".a.json.gz.tmp-1-ab",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    _run(dataset, out)
    assert not [p for p in leftovers if p.exists()]


def test_worker_count_does_not_change_a_byte(dataset: Path, tmp_path: Path) -> None:
    _run(dataset, tmp_path / "one", workers=1)
    _run(dataset, tmp_path / "two", workers=2)
    assert files_under(tmp_path / "one") == files_under(tmp_path / "two")


def test_combined_manifest_covers_every_dataset_prepared_there(
    dataset: Path, tmp_path: Path
) -> None:
    other = tmp_path / "raw" / "Dataset931_Other"
    shutil.copytree(dataset, other)
    out = tmp_path / "out"
    _run(dataset, out)
    _run(other, out)
    _run(dataset, out)  # rerunning the first must keep the second's rows
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert manifest.groupby("dataset").size().to_dict() == {
        "Dataset930_Inc": 6,
        "Dataset931_Other": 6,
    }


def test_nnunet_region_labels_give_overlapping_masks(dataset: Path, tmp_path: Path) -> None:
    doc = json.loads((dataset / "dataset.json").read_text())
    doc["labels"] = {"background": 0, "cord": [1, 2], "gm": 2}  # nnU-Net region-based labels
    (dataset / "dataset.json").write_text(json.dumps(doc))
    _run(dataset, tmp_path / "out")
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    a = manifest[manifest.case_id == "a"].set_index("class_name")
    label = np.asanyarray(load_nifti(dataset / "labelsTr" / "a.nii.gz").dataobj)
    assert a.loc["cord", "voxel_count"] == int((label > 0).sum())
    assert a.loc["gm", "voxel_count"] == int((label == 2).sum())
    assert pd.isna(a.loc["cord", "label_value"]) and a.loc["gm", "label_value"] == 2

"""Each kind of broken raw input gives one quarantine row naming the file and the problem, while
the rest of the dataset is prepared and nothing already written changes. Broken files are made
from the real T2* sample (49x54x9 MR + manual cord mask)."""

from __future__ import annotations

import gzip
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

BAD_NAME = "grey/../matter"


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(load_nifti(path).dataobj)


def _make_bad_cases(root: Path, image: Path, label: Path, samples: Path, work: Path) -> None:
    raw = image.read_bytes()
    add_case(root, "truncated", raw[: len(raw) // 2], label)
    add_case(root, "notnifti", (samples / "amos_style" / "LICENSE").read_bytes(), label)
    add_case(root, "gzipnotnifti", image, gzip.compress(b"not a nifti file" * 100))
    add_case(
        root, "othergrid", image, samples / "nnUNet_raw/Dataset001_TotalSegCT/labelsTr/s0002.nii.gz"
    )
    cord = _array(label)
    add_case(
        root, "label4d", image, save_array(work / "l4.nii.gz", np.stack([cord, cord], -1), label)
    )
    data = _array(image).copy()
    data[10, 10, 4] = np.nan
    data[11, 10, 4] = np.inf
    add_case(root, "nanimage", save_array(work / "nan.nii.gz", data, image), label)
    halves = cord.astype(np.float32) * 1.5
    add_case(root, "floatlabel", image, save_array(work / "half.nii.gz", halves, label))
    seven = cord.copy()
    seven[np.nonzero(cord)[0][:5], np.nonzero(cord)[1][:5], np.nonzero(cord)[2][:5]] = 7
    add_case(root, "unknownvalue", image, save_array(work / "seven.nii.gz", seven, label))
    add_case(root, "allzero", image, save_array(work / "zero.nii.gz", np.zeros_like(cord), label))
    add_case(root, "nolabel", image, None)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory, t2s: tuple[Path, Path], samples_dir: Path):
    """Prepare two good cases, snapshot, add every broken case, prepare again."""
    work = tmp_path_factory.mktemp("bad")
    image, label = t2s
    root = write_nnunet(work / "raw" / "Dataset900_Bad", {"spinal_cord": 1, BAD_NAME: 2})
    add_case(root, "good1", image, label)
    add_case(root, "good2", image, label)
    out = work / "out"
    prepare_dataset(config_for_layout("nnunet", root), out, workers=1)
    before = files_under(out / "Dataset900_Bad")
    _make_bad_cases(root, image, label, samples_dir, work)
    report = prepare_dataset(config_for_layout("nnunet", root), out, workers=2)
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    return out, before, report, quarantine


@pytest.mark.parametrize(
    ("case_id", "kind", "path", "words"),
    [
        ("truncated", "truncated_gzip", "imagesTr/truncated_0000.nii.gz", "truncated gzip"),
        ("notnifti", "not_nifti", "imagesTr/notnifti_0000.nii.gz", "not a readable NIfTI"),
        ("gzipnotnifti", "not_nifti", "labelsTr/gzipnotnifti.nii.gz", "not a readable NIfTI"),
        ("othergrid", "grid_mismatch", "labelsTr/othergrid.nii.gz", "does not overlap"),
        ("label4d", "label_4d", "labelsTr/label4d.nii.gz", "expected a 3D volume"),
        ("nanimage", "non_finite_image", "imagesTr/nanimage_0000.nii.gz", "2 image voxels"),
        ("floatlabel", "non_integer_label", "labelsTr/floatlabel.nii.gz", "not whole numbers"),
        ("unknownvalue", "unknown_label_value", "labelsTr/unknownvalue.nii.gz", "[7] (5 voxels)"),
        ("allzero", "empty_label", "labelsTr/allzero.nii.gz", "all zero"),
        ("nolabel", "missing_file", "labelsTr/nolabel.nii.gz", "does not exist"),
    ],
)
def test_broken_case_is_quarantined(
    bad_run, case_id: str, kind: str, path: str, words: str
) -> None:
    _, _, _, quarantine = bad_run
    rows = quarantine[quarantine.case_id == case_id]
    assert rows[["kind", "path"]].values.tolist() == [[kind, path]]
    assert words in rows.problem.iloc[0]


def test_bad_class_name_is_quarantined_not_written(bad_run) -> None:
    out, _, _, quarantine = bad_run
    rows = quarantine[quarantine.kind == "bad_class_name"]
    assert rows[["class_name", "path"]].values.tolist() == [[BAD_NAME, "dataset.json"]]
    assert not any("matter" in p.as_posix() for p in out.rglob("*"))


def test_rest_of_dataset_is_prepared(bad_run) -> None:
    out, _, report, _ = bad_run
    manifest = pd.read_parquet(out / "manifest.parquet")
    # The unknown value is reported but the case's known class is still written.
    assert sorted(manifest.case_id) == ["good1", "good2", "unknownvalue"]
    assert set(manifest.class_name) == {"spinal_cord"}
    assert report.skipped == 2 and report.cases == 11  # nolabel is not a case


def test_unknown_value_voxels_are_not_in_any_mask(bad_run, t2s) -> None:
    out, _, _, _ = bad_run
    mask = _array(out / "Dataset900_Bad/labelsTr/spinal_cord/unknownvalue.nii.gz")
    assert int(mask.sum()) == int(_array(t2s[1]).sum()) - 5


def test_nothing_already_written_is_damaged(bad_run) -> None:
    out, before, _, _ = bad_run
    after = files_under(out / "Dataset900_Bad")
    assert {k: v for k, v in after.items() if k in before} == before
    rejected = ("truncated", "notnifti", "othergrid", "label4d", "nanimage", "allzero")
    assert not [k for k in after if any(f"/{c}.nii.gz" in k for c in rejected)]


def test_msd_duplicate_ids_and_listed_missing_file(tmp_path: Path, samples_dir: Path) -> None:
    root = tmp_path / "Task900_Dup"
    shutil.copytree(samples_dir / "msd" / "Task101_SpinalCordSCT", root)
    doc = json.loads((root / "dataset.json").read_text())
    entry = doc["training"][0]
    shutil.copyfile(root / "imagesTr" / "sct_001.nii.gz", root / "imagesTr" / "sct_002.nii.gz")
    shutil.copyfile(root / "labelsTr" / "sct_001.nii.gz", root / "labelsTr" / "sct_002.nii.gz")
    second = {"image": "./imagesTr/sct_002.nii.gz", "label": "./labelsTr/sct_002.nii.gz"}
    doc["training"] = [
        entry,
        entry,
        second,
        {"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"},
    ]
    (root / "dataset.json").write_text(json.dumps(doc))
    report = prepare_dataset(config_for_layout("msd", root), tmp_path / "out", workers=1)
    got = sorted((p.case_id, p.kind, p.path) for p in report.problems)
    assert got == [
        ("gone", "missing_file", "imagesTr/gone.nii.gz"),
        ("sct_001", "duplicate_case", "imagesTr/sct_001.nii.gz"),
    ]
    assert "occurs 2 times" in report.problems[-1].problem
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert sorted(set(manifest.case_id)) == ["sct_002"]

"""All shipped sample datasets (five layout kinds) prepared into one output folder; the label
trees and manifests are checked against the raw files they came from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from neurosam3d.data.config import config_for_layout, load_dataset_config, sample_dataset_names
from neurosam3d.data.prepare import prepare_dataset, prepare_datasets
from neurosam3d.data.records import read_record, record_path
from neurosam3d.data.schema import MANIFEST_SCHEMA, check_schema
from neurosam3d.io.nifti import load_nifti
from tests.data.conftest import files_under

DATASETS = {
    "Dataset001_TotalSegCT": "nnunet",
    "Task101_SpinalCordSCT": "msd",
    "TotalSegmentatorSample": "totalsegmentator",
    "TotalSegMRCases": "per_case",
    "SCTBraTSStyle": "per_case",
    "SCTPaired": "paired",
}


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(load_nifti(path).dataobj)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path):
    out = tmp_path_factory.mktemp("prepared")
    reports = prepare_datasets(sample_dataset_names(), out, workers=2)
    return out, reports, pd.read_parquet(out / "manifest.parquet")


def test_every_layout_kind_is_shipped_and_prepared(prepared) -> None:
    out, reports, manifest = prepared
    assert {load_dataset_config(n).layout for n in sample_dataset_names()} == set(DATASETS.values())
    assert sorted(r.dataset for r in reports) == sorted(DATASETS)
    assert not [p for r in reports for p in r.problems]
    assert set(manifest.dataset) == set(DATASETS)
    check_schema(pq.read_table(out / "manifest.parquet"), MANIFEST_SCHEMA, "manifest")
    splits = [
        p for p in sorted((out / "manifests").glob("*.parquet")) if p.stem[-3:] in ("_Tr", "Val")
    ]
    per_dataset = pd.concat(pd.read_parquet(p) for p in splits)
    key = ["dataset", "split", "case_id", "class_name"]
    assert per_dataset[key].sort_values(key).values.tolist() == manifest[key].values.tolist()


def test_masks_match_the_raw_label_map(prepared, samples_dir: Path) -> None:
    out, _, manifest = prepared
    raw = _array(samples_dir / "nnUNet_raw/Dataset001_TotalSegCT/labelsTr/s0001.nii.gz")
    rows = manifest[(manifest.dataset == "Dataset001_TotalSegCT") & (manifest.case_id == "s0001")]
    present = sorted(int(v) for v in np.unique(raw) if v)
    assert sorted(rows.label_value.astype(int)) == present and len(present) == 61
    for row in rows.itertuples():
        mask = _array(out / row.mask_path)
        expected = raw == row.label_value
        assert mask.dtype == np.uint8 and np.array_equal(mask, expected)
        assert row.voxel_count == expected.sum() and row.volume_mm3 == 27.0 * expected.sum()
        nz = np.nonzero(expected)
        assert list(row.bbox_min) == [int(a.min()) for a in nz]
        assert list(row.bbox_max) == [int(a.max()) + 1 for a in nz]  # half-open
        assert row.mask_sha256 == hashlib.sha256((out / row.mask_path).read_bytes()).hexdigest()


def test_masks_lie_on_the_image_grid_and_image_keeps_dtype(prepared, samples_dir: Path) -> None:
    out, _, manifest = prepared
    for row in manifest.groupby(["dataset", "case_id"]).head(2).itertuples():
        image, mask = load_nifti(out / row.image_path), load_nifti(out / row.mask_path)
        assert image.shape == mask.shape == tuple(row.shape)
        assert np.array_equal(image.affine, mask.affine)
        assert np.allclose(row.spacing, np.sqrt((image.affine[:3, :3] ** 2).sum(0)))
    ct = load_nifti(out / "Dataset001_TotalSegCT/imagesTr/s0001.nii.gz")
    raw = load_nifti(samples_dir / "nnUNet_raw/Dataset001_TotalSegCT/imagesTr/s0001_0000.nii.gz")
    assert ct.get_data_dtype() == np.int32 and np.array_equal(ct.dataobj, raw.dataobj)
    assert np.allclose(ct.affine, raw.affine)


def test_no_empty_masks_and_absent_classes_recorded(prepared) -> None:
    out, _, manifest = prepared
    assert (manifest.voxel_count > 0).all()
    absent = pd.read_parquet(out / "absent.parquet")
    ts = absent[(absent.dataset == "TotalSegmentatorSample") & (absent.case_id == "s0002")]
    assert sorted(ts.class_name) == ["iliac_artery_left", "iliac_artery_right", "renal_arteries"]
    assert not list((out / "TotalSegmentatorSample/labelsTr").glob("iliac_artery_left/*"))
    nnunet = absent[absent.dataset == "Dataset001_TotalSegCT"]
    assert len(nnunet[nnunet.case_id == "s0001"]) == 117 - 61


def test_msd_4d_channels_become_one_folder_each(prepared, samples_dir: Path) -> None:
    out, _, manifest = prepared
    raw = _array(samples_dir / "msd/Task101_SpinalCordSCT/imagesTr/sct_001.nii.gz")
    row = manifest[manifest.dataset == "Task101_SpinalCordSCT"].iloc[0]
    assert list(row.channels) == ["T2star", "T2"]
    assert list(row.image_paths) == [
        "Task101_SpinalCordSCT/imagesTr_t2star/sct_001.nii.gz",
        "Task101_SpinalCordSCT/imagesTr_t2/sct_001.nii.gz",
    ]
    for index, path in enumerate(row.image_paths):
        assert np.array_equal(_array(out / path), raw[..., index])
    names = sorted(manifest[manifest.dataset == "Task101_SpinalCordSCT"].class_name)
    assert names == ["spinal_cord_grey_matter", "spinal_cord_white_matter"]


def test_float_labels_and_per_class_files(prepared, samples_dir: Path) -> None:
    out, _, manifest = prepared
    brats = manifest[manifest.dataset == "SCTBraTSStyle"].sort_values("label_value")
    assert brats.label_value.tolist() == [2, 3, 4, 5]
    assert brats.voxel_count.tolist() == [1318, 1461, 1036, 209]  # raw float64 value counts
    ts = manifest[(manifest.dataset == "TotalSegmentatorSample") & (manifest.case_id == "s0002")]
    assert ts.split.unique().tolist() == ["Val"]  # meta.csv
    aorta = ts[ts.class_name == "aorta"].iloc[0]
    raw = _array(samples_dir / "totalsegmentator/s0002/segmentations/aorta.nii.gz")
    assert np.array_equal(_array(out / aorta.mask_path), raw) and pd.isna(aorta.label_value)
    assert "vertebrae_t12" in set(ts.class_name)  # sanitised lower snake case


def test_categories_splits_modality_and_licence(prepared) -> None:
    _, _, manifest = prepared
    by_name = dict(zip(manifest.class_name, manifest.category, strict=False))
    assert by_name["liver"] == "abdomen_thorax" and by_name["vertebrae_l1"] == "bone"
    assert by_name["spinal_cord_grey_matter"] == "nervous" and by_name["iliopsoas_left"] == "muscle"
    paired = manifest[manifest.dataset == "SCTPaired"]
    assert sorted(zip(paired.split, paired.case_id, strict=True)) == [
        ("Tr", "sct_t2"),
        ("Val", "sct_t2s"),
    ]
    assert set(manifest[manifest.dataset == "TotalSegMRCases"].modality) == {"MR"}
    assert set(manifest[manifest.dataset == "Dataset001_TotalSegCT"].licence) == {"Apache-2.0"}


def test_rerun_skips_everything_and_changes_no_byte(prepared) -> None:
    out, _, _ = prepared
    before = files_under(out)
    reports = prepare_datasets(sample_dataset_names(), out, workers=1)
    assert sum(r.prepared for r in reports) == 0
    assert files_under(out) == before


def test_config_less_nnunet_equals_configured(prepared, tmp_path: Path, samples_dir: Path) -> None:
    out, _, _ = prepared
    config = config_for_layout("nnunet", samples_dir / "nnUNet_raw" / "Dataset001_TotalSegCT")
    prepare_dataset(config, tmp_path, workers=1)
    name = "Dataset001_TotalSegCT"
    assert files_under(tmp_path / name) == files_under(out / name)
    record = read_record(record_path(tmp_path, name, "s0002"))
    assert record is not None and len(record["rows"]) == 41

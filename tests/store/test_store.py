"""The training store written by `neurosam3d prepare` on the shipped CT sample (two real CTs,
61 and 41 TotalSegmentator classes): crops equal the label tree's, bytes are deterministic,
missing or stale entries are refused with the fixing command."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neurosam3d.data.config import config_for_layout
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.io.nifti import load_nifti, make_image, nifti_bytes
from neurosam3d.store import StoreError
from neurosam3d.store.build import build_store
from neurosam3d.store.reader import bind_rows, read_image_crop, read_target_crop
from neurosam3d.training.crops import padded_crop
from neurosam3d.training.datasets import CropDataset
from neurosam3d.training.samples import SampleFilter, SampleTable, read_manifests
from neurosam3d.transforms import Preprocessing
from neurosam3d.transforms.geometry import Box
from neurosam3d.transforms.intensity import normalise_intensity

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "nnUNet_raw" / "Dataset001_TotalSegCT"
CROP = 48


def _prepare(out: Path) -> Path:
    prepare_dataset(config_for_layout("nnunet", SAMPLE), out, workers=1)
    return out


def _table(root: Path) -> SampleTable:
    rows = read_manifests([root / "manifest.parquet"], SampleFilter())
    return SampleTable.from_table(rows, root)


def _store_files(root: Path) -> dict[str, bytes]:
    files = [*root.glob("*/store*/*/*"), root / "store.parquet"]
    files += list((root / "manifests").glob("*_store.parquet"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _prepare(tmp_path_factory.mktemp("prepared"))


def test_store_crops_equal_the_label_tree_crops_voxel_for_voxel(tree: Path) -> None:
    table = _table(tree)
    assert len(set(table.case_id.tolist())) == 2
    rows = bind_rows(table)
    val = CropDataset(table, CROP, train=False)
    train = CropDataset(table, CROP, train=True)
    cache: dict[str, tuple[np.ndarray, str]] = {}
    for row in range(0, len(table), 9):
        path = str(table.image_path[row])
        if path not in cache:
            image = np.asanyarray(load_nifti(tree / path).dataobj)
            cache[path] = (normalise_intensity(image, str(table.modality[row])), path)
        norm = cache[path][0]
        mask = np.asanyarray(load_nifti(tree / str(table.mask_path[row])).dataobj)
        for dataset, key in ((val, row), (train, (row, 7 + row))):
            seed = 0 if dataset is val else 7 + row
            start = dataset.crop_origin(row, seed)
            item = dataset[key]
            ref, _ = padded_crop(norm, start, CROP, float(norm.min()), np.float32)
            ref_mask, _ = padded_crop(mask, start, CROP, 0, np.uint8)
            np.testing.assert_array_equal(item["image"][0].numpy(), ref)
            np.testing.assert_array_equal(item["target"][0].numpy(), ref_mask)
            if dataset is train:  # centred on a target voxel
                assert ref_mask[CROP // 2, CROP // 2, CROP // 2] == 1
    # a crop hanging over the volume's corner: padded with the normalised minimum / zeros
    start = np.array([-20, -20, -20])
    image = read_image_crop(rows, 0, start, CROP)
    norm = cache[str(table.image_path[0])][0]
    np.testing.assert_array_equal(image[20:, 20:, 20:], norm[: CROP - 20, : CROP - 20, : CROP - 20])
    assert (image[:20] == norm.min()).all()
    bbox = (table.bbox_min[0], table.bbox_max[0])
    assert not read_target_crop(rows, 0, start, CROP, bbox)[:20].any()


def test_store_bytes_are_deterministic_and_store_build_writes_the_same(
    tree: Path, tmp_path: Path
) -> None:
    again = _prepare(tmp_path / "again")
    first = _store_files(tree)
    assert len(first) == 2 * 3 + 2 and first == _store_files(again)
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(tree, rebuilt)
    for name in _store_files(rebuilt):
        (rebuilt / name).unlink()
    build_store(rebuilt, workers=2)
    assert _store_files(rebuilt) == first
    # the store is smaller than the label tree it is derived from (small volumes here)
    store = sum(len(b) for n, b in first.items() if "/store" in n)
    labels = sum(p.stat().st_size for p in tree.glob("*/labelsTr/*/*.nii.gz"))
    images = sum(p.stat().st_size for p in tree.glob("*/imagesTr/*.nii.gz"))
    assert store < 1.5 * (labels + images)


def test_missing_or_stale_store_is_refused_with_the_fixing_command(
    tree: Path, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree, root)
    table = _table(root)
    row = int(np.flatnonzero(table.class_name == "liver")[0])
    # the label tree changes after the store was built: a new liver mask (its manifest row too)
    mask_path = root / str(table.mask_path[row])
    old = load_nifti(mask_path)
    mask = np.asanyarray(old.dataobj).copy()
    lo = table.bbox_min[row]
    mask[lo[0] : lo[0] + 3, lo[1] : lo[1] + 3, lo[2] : lo[2] + 3] = 0
    data = nifti_bytes(make_image(mask, old.affine, like=old), compresslevel=1)
    mask_path.write_bytes(data)
    manifest = pq.read_table(root / "manifest.parquet").to_pylist()
    for r in manifest:
        if r["mask_path"] == str(table.mask_path[row]):
            r["mask_sha256"] = hashlib.sha256(data).hexdigest()
    schema = pq.read_schema(root / "manifest.parquet")
    pq.write_table(pa.Table.from_pylist(manifest, schema=schema), root / "manifest.parquet")
    with pytest.raises(StoreError) as stale:
        CropDataset(_table(root), CROP, train=False)
    message = str(stale.value)
    assert "store entry is stale" in message and "liver" in message
    assert f"neurosam3d store build --root {root}" in message
    assert str(root / "Dataset001_TotalSegCT" / "storeTr" / str(table.case_id[row])) in message

    build_store(root)  # the fix the message names
    fixed = CropDataset(_table(root), CROP, train=False)
    start = fixed.crop_origin(row, 0)
    ref, _ = padded_crop(mask, start, CROP, 0, np.uint8)
    np.testing.assert_array_equal(fixed[row]["target"][0].numpy(), ref)

    (root / "store.parquet").unlink()
    with pytest.raises(StoreError, match=r"store\.parquet: no training store"):
        CropDataset(_table(root), CROP, train=False)


def test_overlapping_classes_are_kept_exactly_in_one_label_volume(tmp_path: Path) -> None:
    """Region classes (BraTS-style unions) overlap: every class's mask is recovered exactly."""
    import blosc2

    from neurosam3d.store.encode import EntryBuilder

    seg = np.asanyarray(load_nifti(SAMPLE / "labelsTr" / "s0002.nii.gz").dataobj)
    values = [v for v in np.unique(seg).tolist() if v][:3]
    masks = {
        "a": (seg == values[0]).astype(np.uint8),
        "b": (seg == values[1]).astype(np.uint8),
        "a_or_b": np.isin(seg, values[:2]).astype(np.uint8),
        "not_c": ((seg > 0) & (seg != values[2])).astype(np.uint8),
    }
    builder = EntryBuilder("D", "Tr", "c", seg.shape)
    full = tuple(slice(0, s) for s in seg.shape)
    for name, mask in masks.items():
        builder.add(name, full, mask, "0" * 64)
    files, row = builder.encode(seg.astype(np.int16), "MR", "img", 1)
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    codes = blosc2.open(str(tmp_path / "D/storeTr/c/labels.b2nd"), mode="r")[...]
    for k, (name, mask) in enumerate(masks.items()):
        np.testing.assert_array_equal(np.isin(codes, row["label_codes"][k]), mask > 0, name)
    locations = np.load(tmp_path / "D/storeTr/c/locations.npy")
    for k, mask in enumerate(masks.values()):
        picked = locations[row["location_offsets"][k] : row["location_offsets"][k + 1]]
        assert len(picked) == min(int(mask.sum()), 2048)
        assert mask[tuple(picked.T)].all()  # every stored crop centre is a target voxel


@pytest.fixture(scope="module")
def narrow_tree(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped CTs' tree with its store rebuilt for the CT window [-200, 300]."""
    root = tmp_path_factory.mktemp("narrow") / "tree"
    shutil.copytree(tree, root)
    build_store(root, ct_window=(-200.0, 300.0))
    return root


@pytest.mark.parametrize(
    ("rule", "window"),
    [("zscore", (-200.0, 300.0)), ("percentile", (-200.0, 300.0)), ("percentile", None)],
)
def test_training_crops_equal_evaluations_normalised_crops(
    tree: Path, narrow_tree: Path, rule: str, window: tuple[float, float] | None
) -> None:
    """Training's store path and evaluation's :meth:`Preprocessing.prepare` (lazy and eager)
    give the same model input for the same region of a real CT, padding included."""
    root = tree if window is None else narrow_tree
    window = window or (-1000.0, 1000.0)
    table = _table(root)
    record = Preprocessing(intensity=rule, ct_window=window)
    val = CropDataset(table, CROP, train=False, ct_window=window, intensity=rule)
    train = CropDataset(table, CROP, train=True, ct_window=window, intensity=rule)
    prepared: dict[str, list] = {}
    for row in range(0, len(table), 17):
        path = str(table.image_path[row])
        if path not in prepared:
            image = load_nifti(root / path)
            stored = np.asarray(image.dataobj)
            prepared[path] = [
                record.prepare(stored, "CT", image.affine, lazy=lazy) for lazy in (True, False)
            ]
        starts = [val.crop_origin(row, 0), train.crop_origin(row, 3 + row), np.array([-9, -9, 5])]
        for start in starts:
            crop = read_image_crop(val.store, row, start, CROP, rule)
            for image in prepared[path]:
                expected = image.window(Box(tuple(int(s) for s in start), (CROP,) * 3))
                np.testing.assert_allclose(crop, expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(
            val[row]["image"][0].numpy(),
            read_image_crop(val.store, row, val.crop_origin(row, 0), CROP, rule),
        )
    if rule == "percentile":  # the 0.05 / 99.95 percentiles after the clip go to -1 and 1
        assert crop.min() == -1.0 and crop.max() <= 1.0


def test_a_store_without_percentiles_is_refused_with_the_rebuild_command(
    tree: Path, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree, root)
    old = pq.read_table(root / "store.parquet").drop(["percentile_low", "percentile_high"])
    pq.write_table(old, root / "store.parquet")  # what an older version (store/1) wrote
    with pytest.raises(StoreError) as refused:
        CropDataset(_table(root), CROP, train=False, intensity="percentile")
    message = str(refused.value)
    assert "missing columns ['percentile_high', 'percentile_low']" in message
    assert f"neurosam3d store build --root {root}" in message
    with pytest.raises(ValueError, match="crop_zscore"):
        CropDataset(_table(tree), CROP, train=False, intensity="crop_zscore")

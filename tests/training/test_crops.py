"""Intensity normalisation, crop geometry, the region cache and the crop datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurosam3d.training.crops import bbox_centre, crop_start, padded_crop
from neurosam3d.training.datamodule import evenly_spaced, select_rows
from neurosam3d.training.datasets import BalancedSampler, CropDataset, ShardSampler
from neurosam3d.training.samples import SampleFilter, SampleTable, read_manifests
from neurosam3d.transforms.intensity import normalise_intensity
from neurosam3d.windows.tiling import plan_windows

CROP = 32


def test_ct_is_clipped_then_z_scored_on_foreground() -> None:
    volume = np.array([-3000.0, -1000.0, 100.0, 300.0, 5000.0])
    out = normalise_intensity(volume, "CT", (-1000.0, 1000.0))
    fg = np.array([100.0, 300.0, 1000.0])  # values > 0 after clipping
    expected = (np.clip(volume, -1000, 1000) - fg.mean()) / fg.std()
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32


def test_mr_is_not_clipped_and_constant_volumes_become_zero() -> None:
    volume = np.array([0.0, 0.0, 2000.0, 4000.0])
    out = normalise_intensity(volume, "MR")
    np.testing.assert_allclose(out, [-3.0, -3.0, -1.0, 1.0], rtol=1e-6)
    assert not normalise_intensity(np.full(5, 7.0), "MR").any()


def test_padded_crop_fills_outside_the_volume_and_the_box() -> None:
    volume = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    crop, inside = padded_crop(volume, np.array([-1, 0, 1]), 2, -5.0, np.float32)
    assert crop.shape == (2, 2, 2)
    np.testing.assert_array_equal(crop[0], -5.0)  # i = -1 lies before the volume
    np.testing.assert_array_equal(crop[1], volume[0, 0:2, 1:3])
    assert inside == (slice(1, 2), slice(0, 2), slice(0, 2))
    boxed, _ = padded_crop(
        volume, np.array([0, 0, 0]), 3, 0, np.float32, within=([1, 1, 1], [2, 3, 3])
    )
    assert (boxed != 0).sum() == 4 and boxed[1, 1, 1] == volume[1, 1, 1]
    assert padded_crop(volume, np.array([5, 5, 5]), 2, 1.0, np.float32)[1] is None
    assert crop_start(np.array([5, 5, 5]), 4).tolist() == [3, 3, 3]
    assert bbox_centre(np.array([2, 2, 2]), np.array([6, 7, 3])).tolist() == [3, 4, 2]


@pytest.fixture(scope="module")
def table(ct_manifest: Path) -> SampleTable:
    return SampleTable.from_table(
        read_manifests([ct_manifest], SampleFilter(splits=["Tr"])), ct_manifest.parent
    )


def test_train_crop_is_reproducible_and_contains_the_target(table: SampleTable) -> None:
    ds = CropDataset(table, CROP, train=True)
    a, b, c = ds[(0, 11)], ds[(0, 11)], ds[(0, 12)]
    assert a["image"].shape == a["target"].shape == (1, CROP, CROP, CROP)
    assert a["target"][0, CROP // 2, CROP // 2, CROP // 2] == 1  # centred on a target voxel
    assert (a["image"] == b["image"]).all() and (a["target"] == b["target"]).all()
    assert not (a["image"] == c["image"]).all()
    assert set(a["target"].unique().tolist()) == {0.0, 1.0}


def test_val_crop_is_centred_on_the_bbox_and_deterministic(table: SampleTable) -> None:
    ds = CropDataset(table, CROP, train=False)
    first, again = ds[3], ds[3]
    assert (first["image"] == again["image"]).all()
    assert int(first["row"]) == 3
    # the window evaluation lays over the same target (one placement rule)
    lo, hi = table.bbox_min[3], table.bbox_max[3]
    origin = tuple(ds.crop_origin(3, 0).tolist())
    assert origin == tuple(np.floor((lo + hi) / 2 - CROP / 2 + 0.5).astype(int).tolist())
    if (hi - lo).max() + 2 <= CROP:  # one evaluation window: the same one
        assert [origin] == [w.start for w in plan_windows(lo, hi, CROP)]
    assert first["target"].sum() > 0


def test_store_crops_equal_crops_of_the_nifti_tree(table: SampleTable) -> None:
    """A store built by `store build` from a hand-written tree gives the tree's crops exactly."""
    from neurosam3d.io.nifti import load_nifti

    ds = CropDataset(table, CROP, train=True)
    image = np.asanyarray(load_nifti(Path(table.root) / table.image_path[1]).dataobj)
    mask = np.asanyarray(load_nifti(Path(table.root) / table.mask_path[1]).dataobj)
    norm = normalise_intensity(image, "CT")
    for seed in (5, 6):
        start = ds.crop_origin(1, seed)
        item = ds[(1, seed)]
        ref, _ = padded_crop(norm, start, CROP, float(norm.min()), np.float32)
        ref_mask, _ = padded_crop(mask, start, CROP, 0, np.uint8)
        np.testing.assert_array_equal(item["image"][0].numpy(), ref)
        np.testing.assert_array_equal(item["target"][0].numpy(), ref_mask)


def test_augmentation_is_seeded_per_sample(table: SampleTable) -> None:
    augment = ({"name": "RandomFlip", "axes": [0, 1, 2], "flip_probability": 0.5},)
    ds = CropDataset(table, CROP, train=True, augment=augment)
    plain = CropDataset(table, CROP, train=True)
    draws = [ds[(2, s)]["image"] for s in range(6)]
    again = [ds[(2, s)]["image"] for s in range(6)]
    assert all((x == y).all() for x, y in zip(draws, again, strict=True))
    assert any(not (ds[(2, s)]["image"] == plain[(2, s)]["image"]).all() for s in range(6))
    with pytest.raises(ValueError, match="not a torchio random transform"):
        CropDataset(table, CROP, train=True, augment=({"name": "ZNormalization"},))


def test_balanced_sampler_shards_are_disjoint_and_cover_the_draws() -> None:
    weights = np.array([0.5, 0.25, 0.25])
    single = list(BalancedSampler(weights, 8, seed=3))
    shards = [list(BalancedSampler(weights, 4, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4
    assert sorted(shards[0] + shards[1]) == sorted(single)
    sampler = BalancedSampler(weights, 8, seed=3)
    sampler.set_epoch(0)
    assert list(sampler) == single
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != single
    resumed = BalancedSampler(weights, 8, seed=3, skip=3)  # 3 keys done before the checkpoint
    assert len(resumed) == 8  # the nominal epoch: Lightning counts the 3 done keys itself
    assert list(resumed) == single[3:]
    resumed.set_epoch(4)  # the first epoch Lightning announces is the resumed one
    assert list(resumed) == single[3:]
    resumed.set_epoch(5)
    assert list(resumed) == second  # later epochs are whole blocks again
    assert list(ShardSampler(5, rank=1, world_size=2)) == [1, 3]


def test_select_rows_and_evenly_spaced_validation_subset(ct_manifest: Path) -> None:
    from neurosam3d.training.config import DataConfig

    cfg = DataConfig(root=str(ct_manifest.parent), classes=("liver", "aorta"))
    rows = select_rows(cfg, (str(ct_manifest),), ("Val",))
    assert rows.class_name.tolist() == ["aorta", "liver"]
    assert evenly_spaced(10, 3).tolist() == [0, 4, 9]
    assert evenly_spaced(3, None).tolist() == [0, 1, 2]

"""The Preprocessing record: its JSON form, validation, defaults per file kind, overrides, rules."""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neurosam3d.transforms import (
    PREPROCESSING_KEY,
    Preprocessing,
    PreprocessingError,
    record_from_metadata,
)
from neurosam3d.transforms.geometry import Box
from neurosam3d.transforms.intensity import (
    PERCENTILES,
    intensity_stats,
    percentile_stats,
    zscore_crop,
)

CT = (
    Path(__file__).resolve().parents[2]
    / "samples"
    / "nnUNet_raw"
    / "Dataset001_TotalSegCT"
    / "imagesTr"
    / "s0002_0000.nii.gz"
)


def test_record_round_trips_and_refuses_what_it_cannot_read() -> None:
    record = Preprocessing(orientation="ras", spacing_mm=1.5, ct_window=(-200, 300), input_size=64)
    assert record.orientation == "RAS" and record.spacing_mm == (1.5, 1.5, 1.5)
    assert Preprocessing.from_json(record.to_json()) == record
    assert record.to_json() == Preprocessing.from_dict(record.to_dict()).to_json()  # stable bytes
    with pytest.raises(PreprocessingError, match="unknown preprocessing keys"):
        Preprocessing.from_dict({**record.to_dict(), "colour": 1}, "x.ckpt")
    with pytest.raises(PreprocessingError, match=r"x\.ckpt: preprocessing record version 9"):
        Preprocessing.from_dict({**record.to_dict(), "version": 9}, "x.ckpt")
    with pytest.raises(PreprocessingError, match="orientation 'RAX'"):
        Preprocessing(orientation="RAX")
    with pytest.raises(PreprocessingError, match="intensity rule"):
        Preprocessing(intensity="minmax")
    with pytest.raises(PreprocessingError, match="low end"):
        Preprocessing(ct_window=(300, -200))


def test_files_without_a_record_get_the_default_of_their_kind() -> None:
    recorded = Preprocessing(spacing_mm=2.0, input_size=64)
    args = argparse.Namespace(img_size=128)
    setattr(args, PREPROCESSING_KEY, recorded.to_dict())
    assert record_from_metadata({"args": args}, "release", 64, "f") == (recorded, "recorded")
    meta = {PREPROCESSING_KEY: recorded.to_json()}
    assert record_from_metadata(meta, "safetensors", 64, "f") == (recorded, "recorded")
    upstream, where = record_from_metadata({"args": argparse.Namespace()}, "release", 128, "f")
    assert where == "upstream default"
    assert upstream == Preprocessing(
        orientation="RAS", spacing_mm=1.5, intensity="crop_zscore", ct_window=None, input_size=128
    )
    native, where = record_from_metadata({}, "lightning", 64, "f")
    assert (native, where) == (Preprocessing(input_size=64), "native default")


def test_options_override_fields_and_say_which() -> None:
    record = Preprocessing(orientation="RAS", spacing_mm=1.5)
    same, changed = record.overridden(orientation="RAS")
    assert same == record and changed == []
    native, changed = record.overridden(orientation="native", spacing_mm="native")
    assert native.orientation is None and native.spacing_mm is None
    assert changed == ["orientation", "spacing_mm"]
    window, changed = record.overridden(ct_window=(-100, 200))
    assert window.ct_window == (-100.0, 200.0) and changed == ["ct_window"]


def test_intensity_rules_on_a_real_ct() -> None:
    image = nib.load(CT)
    volume = np.asarray(image.dataobj)
    box = Box((10, 10, 0), (64, 64, 32))
    # zscore with the record's window: the training store's statistics, the same values
    record = Preprocessing(ct_window=(-200.0, 300.0))
    prepared = record.prepare(volume, "CT", image.affine)
    stats = intensity_stats(volume, "CT", (-200.0, 300.0))
    np.testing.assert_allclose(
        prepared.volume, (np.clip(volume, -200, 300) - stats.mean) / stats.std, atol=1e-5
    )
    assert prepared.crop_transform is None and prepared.background == pytest.approx(
        float(prepared.volume.min())
    )
    # percentile: the CT clip, then [-1, 1]
    percentile = Preprocessing(intensity="percentile").prepare(volume, "CT", image.affine)
    assert percentile.volume.min() == pytest.approx(-1.0)
    assert percentile.volume.max() == pytest.approx(1.0, abs=1e-5)
    # crop_zscore: each window, padded with 0, z-scored on its voxels > 0 (torchio's znorm)
    per_crop = Preprocessing(intensity="crop_zscore", ct_window=None)  # upstream's, native grid
    crop = per_crop.prepare(volume, "CT", image.affine).window(box)
    raw = np.asarray(volume, np.float32)[10:74, 10:74, 0:30]
    padded = np.zeros(box.size, np.float32)
    padded[:, :, :30] = raw  # the box leaves the image in z: padding 0, as upstream pads
    positive = padded[padded > 0]
    expected = (padded - positive.mean()) / positive.std(ddof=1)
    np.testing.assert_allclose(crop, expected, atol=1e-4)
    np.testing.assert_array_equal(zscore_crop(np.zeros((4, 4, 4))), np.zeros((4, 4, 4)))


@pytest.mark.parametrize(
    ("dtype", "scale", "window"),
    [
        (np.int16, 800.0, (-1000.0, 1000.0)),  # a histogram of the stored values, then clipped
        (np.uint8, 60.0, None),
        (np.uint32, 5e8, None),  # too wide for a histogram: np.partition in the stored dtype
        (np.float32, 1.0, None),
    ],
)
def test_percentiles_are_numpys_without_a_float_copy(dtype, scale, window) -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 1001, 4096):
        values = rng.normal(0.0, scale, n)
        if np.issubdtype(dtype, np.unsignedinteger):
            values = np.abs(values)
        volume = values.astype(dtype).reshape(-1, 1, 1)
        data = volume.astype(np.float32)
        clipped = data if window is None else np.clip(data, *window)
        stats = percentile_stats(volume, "CT" if window else "MR", window)
        expected = np.percentile(clipped, PERCENTILES)
        np.testing.assert_allclose(stats.bounds, expected, rtol=1e-6, atol=0)
        assert stats.minimum == clipped.min()


def test_lazy_percentile_scaling_makes_no_float_copy_and_matches_the_eager_one() -> None:
    image = nib.load(CT)
    volume = np.tile(np.asarray(image.dataobj), (2, 2, 2))  # int16, 2.6 M voxels
    record = Preprocessing(intensity="percentile", ct_window=(-200.0, 300.0))
    tracemalloc.start()
    lazy = record.prepare(volume, "CT", image.affine, lazy=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < volume.size * 4 / 2, peak  # a float32 copy would be volume.size * 4 bytes
    eager = record.prepare(volume, "CT", image.affine)
    box = Box((-5, 20, 3), (48, 48, 48))
    np.testing.assert_array_equal(lazy.window(box), eager.window(box))
    assert lazy.background == eager.background == -1.0
    np.testing.assert_array_equal(lazy.volume[:, :, 7], eager.volume[:, :, 7])

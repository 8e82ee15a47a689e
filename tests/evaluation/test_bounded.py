"""Per-click cost bounded by the target: mapping back and scoring on a block equal the whole-grid
results (real masks of the shipped CT and of the LAS, anisotropic T2*); a click allocates no
volume-sized float array; the image is normalised per crop."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurosam3d.evaluation.metrics import ReferenceScorer, score_masks
from neurosam3d.evaluation.protocol import ProtocolConfig, run_full, target_seed
from neurosam3d.model import build_model
from neurosam3d.transforms.geometry import (
    Box,
    box_to_footprint,
    box_to_original,
    grid_for_image,
    sample_box,
)
from neurosam3d.transforms.intensity import intensity_stats, normalise_intensity
from neurosam3d.transforms.volume import NormalisedVolume

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CT_LABELS = SAMPLES / "nnUNet_raw/Dataset001_TotalSegCT/labelsTr/s0001.nii.gz"
T2S_LABEL = SAMPLES / "amos_style/labelsVa/sct_t2s.nii.gz"


@pytest.mark.parametrize(
    ("path", "orientation", "spacing"),
    [(CT_LABELS, None, None), (CT_LABELS, "RAS", None), (T2S_LABEL, "RAS", 1.0)],
)
def test_box_to_footprint_is_box_to_original_on_the_block(path, orientation, spacing):
    image = nib.load(path)
    grid = grid_for_image(image, orientation, spacing)
    rng = np.random.default_rng(0)
    box = Box((-3, 5, 2), (20, 18, 9))  # sticks out of the working grid on one side
    values = rng.random(box.size).astype(np.float32)
    whole = box_to_original(values, grid, box)
    slices, block = box_to_footprint(values, grid, box)
    np.testing.assert_allclose(block, whole[slices], atol=1e-6)
    outside = whole.copy()
    outside[slices] = 0
    assert not outside.any()  # nothing of the box lands outside its footprint


def test_scoring_a_block_equals_scoring_the_whole_grid():
    labels = np.asarray(nib.load(CT_LABELS).dataobj)
    spacing = (3.0, 3.0, 3.0)
    liver, spleen = labels == 5, labels == 1
    scorer = ReferenceScorer(liver, spacing, 4.0)
    for pred in (np.roll(liver, 2, axis=0), liver | spleen, spleen, np.zeros_like(liver)):
        expected = score_masks(pred, liver, spacing, 4.0)
        idx = np.argwhere(pred) if pred.any() else np.zeros((1, 3), int)
        lo = np.maximum(idx.min(axis=0) - 3, 0)
        hi = idx.max(axis=0) + 4
        block = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        got = scorer.score_box(pred[block], block)
        assert got.pred_voxels == expected.pred_voxels
        assert got.true_positives == expected.true_positives
        assert got.dice == pytest.approx(expected.dice, abs=1e-12, nan_ok=True)
        assert got.nsd == pytest.approx(expected.nsd, abs=1e-12, nan_ok=True)
        assert scorer.score(pred) == got


def test_a_click_allocates_no_volume_sized_float_array(real):
    """The left adrenal (210 voxels) of the shipped 3 mm CT (1.38 M voxels), `tiny` model, one
    64^3 window: every array numpy allocates during the clicks (the image read per crop, the
    stitched and mapped-back probabilities, the masks on the click region, the scoring) adds up
    to less than one float32 copy of the volume (tracemalloc peak)."""
    image = nib.load(real["ct"])
    adrenal = np.asarray(nib.load(real["ct_seg"]).dataobj) == 9
    volume = NormalisedVolume.from_image(image, "CT")
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    config = ProtocolConfig(clicks=2, max_windows=1)
    generator = torch.Generator().manual_seed(target_seed(0, "s0001", "adrenal_gland_left"))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with torch.inference_mode():
            result = run_full(model, volume, adrenal, grid_for_image(image), config, generator)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert result.final.windows_predicted == 1 and len(result.clicks) == 2
    assert result.probabilities.dtype == np.float16
    assert 0 < peak < 4 * adrenal.size, f"{peak / adrenal.size:.2f} bytes per volume voxel"


def test_normalised_volume_reads_what_normalise_intensity_gives(real):
    image = nib.load(real["ct"])
    stored = np.asarray(image.dataobj)
    expected = normalise_intensity(stored, "CT")
    volume = NormalisedVolume.from_image(image, "CT")
    stats = intensity_stats(stored, "CT")
    assert volume.stats.mean == pytest.approx(stats.mean, rel=1e-6)
    assert volume.stats.std == pytest.approx(stats.std, rel=1e-6)
    assert volume.min() == pytest.approx(float(expected.min()), abs=1e-5)
    block = (slice(10, 70), slice(0, 101), slice(50, 51))
    np.testing.assert_allclose(volume[block], expected[block], atol=1e-5)
    assert volume.stored is not None and volume[block].dtype == np.float32
    # a crop through the protocol's sampling equals the crop of the normalised copy (RAS grid)
    grid = grid_for_image(image, "RAS")
    box = Box((-5, 20, 30), (40, 40, 40))
    np.testing.assert_allclose(
        sample_box(volume, grid, box, cval=-9.0),
        sample_box(expected, grid, box, cval=-9.0),
        atol=1e-5,
    )

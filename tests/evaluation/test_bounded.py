"""Per-click cost bounded by the target: mapping back and scoring on a block equal the whole-grid
results (real masks of the shipped CT and of the LAS, anisotropic T2*)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neurosam3d.evaluation.metrics import ReferenceScorer, score_masks
from neurosam3d.transforms.geometry import Box, box_to_footprint, box_to_original, grid_for_image

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

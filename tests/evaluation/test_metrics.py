"""Dice and NSD against MONAI (an independent implementation) on real masks, and hand cases."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from neurosam3d.evaluation.metrics import (
    ReferenceScorer,
    normalised_surface_dice,
    score_masks,
    surface,
)
from neurosam3d.io.nifti import voxel_spacing


@pytest.fixture(scope="module")
def real_pairs(real):
    """(prediction, reference, spacing) triples: real masks against perturbed copies of themselves."""
    pairs = []
    ct = nib.load(real["ct_sm_seg"])
    labels = np.asarray(ct.dataobj)
    for value in (5, 2):  # liver, kidney_right: large and medium targets, 3 mm voxels
        ref = labels == value
        pairs.append((ndimage.binary_dilation(ref, iterations=1), ref, voxel_spacing(ct)))
    t2s = nib.load(real["t2s_wm_gm"])  # 0.5 x 0.5 x 7.5 mm
    grey = np.asarray(t2s.dataobj) == 2
    cord = np.asarray(nib.load(real["t2s_seg"]).dataobj) > 0
    pairs.append((grey, cord, voxel_spacing(t2s)))
    pairs.append((np.roll(cord, 2, axis=0), cord, voxel_spacing(t2s)))
    return pairs


def test_dice_and_nsd_match_monai_on_real_masks(real_pairs):
    import torch
    from monai.metrics import DiceMetric, compute_surface_dice

    for pred, ref, spacing in real_pairs:
        ours = score_masks(pred, ref, spacing, tolerance_mm=2.0)
        p = torch.from_numpy(pred[None, None].astype(np.float32))
        r = torch.from_numpy(ref[None, None].astype(np.float32))
        monai_dice = DiceMetric(include_background=True)(p, r).item()
        monai_nsd = compute_surface_dice(
            p, r, class_thresholds=[2.0], include_background=True, spacing=list(spacing)
        ).item()
        assert ours.dice == pytest.approx(monai_dice, abs=1e-6)
        assert ours.nsd == pytest.approx(monai_nsd, abs=1e-6)
        assert ours.pred_voxels == int(pred.sum()) and ours.ref_voxels == int(ref.sum())


def test_nsd_uses_spacing_in_mm():
    # Two slabs one voxel apart along axis 2: 1 mm apart with 1 mm voxels, 3 mm with 3 mm voxels.
    ref = np.zeros((6, 6, 8), bool)
    pred = np.zeros_like(ref)
    ref[1:5, 1:5, 2:4] = True
    pred[1:5, 1:5, 3:5] = True
    assert normalised_surface_dice(pred, ref, (1.0, 1.0, 1.0), 2.0) == 1.0
    # With 3 mm slices only the surface voxels that overlap in-plane stay within 2 mm.
    coarse = normalised_surface_dice(pred, ref, (1.0, 1.0, 3.0), 2.0)
    assert coarse < 1.0
    assert normalised_surface_dice(pred, ref, (1.0, 1.0, 3.0), 3.0) == 1.0


def test_hand_computed_dice_and_surface():
    ref = np.zeros((5, 5, 5), bool)
    ref[1:4, 1:4, 1:4] = True  # 27 voxels, 26 on the surface
    pred = np.zeros_like(ref)
    pred[1:4, 1:4, 1:3] = True  # 18 voxels, all inside ref
    scores = score_masks(pred, ref, (1.0, 1.0, 1.0))
    assert scores.dice == pytest.approx(2 * 18 / (27 + 18))
    assert scores.true_positives == 18
    assert int(surface(ref).sum()) == 26
    # A mask touching the array border has its border voxels on the surface.
    full = np.ones((3, 3, 3), bool)
    assert int(surface(full).sum()) == 26


@pytest.mark.parametrize(
    ("pred_any", "ref_any", "expected"),
    [(False, False, math.nan), (True, False, 0.0), (False, True, 0.0)],
)
def test_empty_mask_policy(pred_any, ref_any, expected):
    pred = np.zeros((4, 4, 4), bool)
    ref = np.zeros_like(pred)
    pred[1, 1, 1] = pred_any
    ref[2, 2, 2] = ref_any
    scores = score_masks(pred, ref, (1.0, 1.0, 1.0))
    for value in (scores.dice, scores.nsd):
        assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_reference_scorer_matches_score_masks(real_pairs):
    for pred, ref, spacing in real_pairs:
        scorer = ReferenceScorer(ref, spacing, tolerance_mm=2.0)
        for candidate in (pred, ref, np.zeros_like(ref), ndimage.binary_erosion(ref)):
            assert scorer.score(candidate) == score_masks(candidate, ref, spacing, 2.0)

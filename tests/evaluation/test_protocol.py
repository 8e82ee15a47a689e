"""The click loop with a perfect model: geometry, windows and stitching lose nothing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurosam3d.evaluation.protocol import ProtocolConfig, run_target, target_seed
from neurosam3d.transforms.geometry import grid_for_image

from .oracle import OracleModel

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _run(image, reference, size, clicks, rule="random_error", orientation=None, spacing=None):
    config = ProtocolConfig(
        clicks=clicks, click_rule=rule, orientation=orientation, spacing_mm=spacing
    )
    grid = grid_for_image(image, orientation, spacing)
    generator = torch.Generator().manual_seed(target_seed(0, "case", "class"))
    return run_target(
        OracleModel(size), reference.astype(np.float32), reference, grid, config, generator
    )


@pytest.mark.parametrize("orientation", [None, "RAS"])
def test_perfect_model_scores_one_on_a_non_ras_volume(real, oracle, orientation):
    seg = nib.load(real["mr_seg"])  # LPS
    liver = np.asarray(seg.dataobj) == 5  # total_mr liver, fits one 64^3 window
    result = _run(seg, liver, 64, clicks=3, orientation=orientation)
    assert [c.scores.dice for c in result.clicks] == [1.0, 1.0, 1.0]
    assert [c.scores.nsd for c in result.clicks] == [1.0, 1.0, 1.0]
    assert result.final.scores.ref_voxels == int(liver.sum())
    np.testing.assert_array_equal(result.full_prediction(liver.shape), liver)
    # One embedding for the single window; every click re-predicts with all clicks so far and
    # the previous logits (none for the first).
    assert len(oracle.images) == 1
    assert oracle.predictions == [(0, 1, False), (0, 2, True), (0, 3, True)]


def test_full_protocol_predicts_every_window_of_a_large_target_from_the_first_click(oracle):
    """Liver of the shipped 3 mm CT (s0001) with 24^3 windows: many windows, one click."""
    seg = nib.load(SAMPLES / "nnUNet_raw/Dataset001_TotalSegCT/labelsTr/s0001.nii.gz")
    liver = np.asarray(seg.dataobj) == 5
    config = ProtocolConfig(clicks=2, max_windows=200)
    grid = grid_for_image(seg)
    generator = torch.Generator().manual_seed(target_seed(0, "case", "liver"))
    result = run_target(OracleModel(24), liver.astype(np.float32), liver, grid, config, generator)
    first = result.clicks[0]
    # Every window the prediction overlaps is predicted after the first click, seeded from its
    # neighbours' masks: Dice is that of the model (here perfect), not capped by the clicks.
    assert first.windows > 8
    assert first.windows_predicted == first.windows
    assert first.scores.dice == 1.0 and first.scores.nsd == 1.0
    assert first.seeded_clicks >= first.windows_predicted - 8  # a click lies in <= 8 windows
    np.testing.assert_array_equal(result.full_prediction(liver.shape), liver)
    # Each window encoded once; seeded windows of one round decoded in one batch.
    assert len(oracle.images) == result.final.windows_predicted
    assert max(oracle.batches) > 1


def test_growth_stops_at_max_windows_and_counts_what_is_left(oracle):
    seg = nib.load(SAMPLES / "nnUNet_raw/Dataset001_TotalSegCT/labelsTr/s0001.nii.gz")
    liver = np.asarray(seg.dataobj) == 5
    config = ProtocolConfig(clicks=1, max_windows=4)
    generator = torch.Generator().manual_seed(target_seed(0, "case", "liver"))
    result = run_target(
        OracleModel(24), liver.astype(np.float32), liver, grid_for_image(seg), config, generator
    )
    assert result.final.windows_predicted <= 8 + 4  # click windows + growth up to the cap
    assert result.final.windows > result.final.windows_predicted
    assert result.final.scores.dice < 1.0


def test_resampled_grid_maps_back_close_to_the_reference(real, oracle):
    seg = nib.load(real["t2s_seg"])  # 0.5 x 0.5 x 7.5 mm LAS
    cord = np.asarray(seg.dataobj) > 0
    result = _run(seg, cord, 64, clicks=1, orientation="RAS", spacing=1.0)
    assert result.final.scores.dice > 0.9
    assert result.full_prediction(cord.shape).shape == cord.shape


def test_config_rejects_unknown_rule_and_zero_clicks():
    with pytest.raises(KeyError, match="random_error"):
        ProtocolConfig(click_rule="best_click")
    with pytest.raises(ValueError, match="at least 1"):
        ProtocolConfig(clicks=0)

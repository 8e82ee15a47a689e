"""The click loop with a perfect model: geometry, windows and stitching lose nothing."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

from neurosam3d.evaluation.geometry import grid_for_image
from neurosam3d.evaluation.protocol import ProtocolConfig, run_target, target_seed

from .oracle import OracleModel


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
    np.testing.assert_array_equal(result.prediction, liver)
    # One embedding for the single window; every click re-predicts with all clicks so far and
    # the previous logits (none for the first).
    assert len(oracle.images) == 1
    assert oracle.predictions == [(0, 1, False), (0, 2, True), (0, 3, True)]


def test_large_target_is_tiled_and_clicks_open_windows(real, oracle):
    seg = nib.load(real["ct_seg"])
    liver = np.asarray(seg.dataobj) == 5
    result = _run(seg, liver, 24, clicks=12, rule="center_error")
    dice = [c.scores.dice for c in result.clicks]
    windows = [c.windows for c in result.clicks]
    assert windows[0] < windows[-1]
    assert dice[0] < 1.0 and dice[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(dice))
    # Each window was encoded once, however many clicks it received.
    assert len(oracle.images) == windows[-1]


def test_resampled_grid_maps_back_close_to_the_reference(real, oracle):
    seg = nib.load(real["t2s_seg"])  # 0.5 x 0.5 x 7.5 mm LAS
    cord = np.asarray(seg.dataobj) > 0
    result = _run(seg, cord, 64, clicks=1, orientation="RAS", spacing=1.0)
    assert result.final.scores.dice > 0.9
    assert result.prediction.shape == cord.shape


def test_config_rejects_unknown_rule_and_zero_clicks():
    with pytest.raises(KeyError, match="random_error"):
        ProtocolConfig(click_rule="best_click")
    with pytest.raises(ValueError, match="at least 1"):
        ProtocolConfig(clicks=0)

"""Click rules on the real 61-class TotalSegmentator label (shipped sample data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from neurosam3d.io.nifti import load_nifti
from neurosam3d.prompts import box_from_mask, center_error_click, random_error_click
from tests.conftest import total_class_names

STRUCTURE = np.ones((3, 3, 3), dtype=bool)


@pytest.fixture(scope="module")
def real_targets(real: dict[str, Path]) -> tuple[torch.Tensor, list[str]]:
    """Binary masks of four real classes with several components (ribs) or one (liver)."""
    names = total_class_names()
    seg = np.asanyarray(load_nifti(real["ct_seg"]).dataobj)
    present = [int(v) for v in np.unique(seg) if v]
    picked = [v for v in present if names[v] in ("liver", "aorta")][:2]
    multi = [v for v in present if ndimage.label(seg == v, STRUCTURE)[1] > 1][:2]
    values = picked + multi
    masks = torch.from_numpy(np.stack([seg == v for v in values]))
    return masks, [names[v] for v in values]


def test_first_clicks_lie_in_each_targets_largest_component(
    real_targets: tuple[torch.Tensor, list[str]],
) -> None:
    masks, names = real_targets
    for rule in (center_error_click, random_error_click):
        clicks = rule(masks, generator=torch.Generator().manual_seed(0))
        assert clicks.labels[:, 0].tolist() == [1] * len(names)
        for b, name in enumerate(names):
            labels, _ = ndimage.label(masks[b].numpy(), STRUCTURE)
            sizes = np.bincount(labels.ravel())[1:]
            d, h, w = clicks.coords[b, 0].long().tolist()
            assert labels[d, h, w] == int(np.argmax(sizes)) + 1, (rule.__name__, name)


def test_corrective_clicks_fall_in_the_error_region(
    real_targets: tuple[torch.Tensor, list[str]],
) -> None:
    masks, _ = real_targets
    probs = torch.roll(masks.float(), shifts=3, dims=1) * 0.9  # a shifted prediction
    for rule in (center_error_click, random_error_click):
        clicks = rule(masks, probs, generator=torch.Generator().manual_seed(1))
        for b in range(masks.shape[0]):
            d, h, w = clicks.coords[b, 0].long().tolist()
            in_target, predicted = bool(masks[b, d, h, w]), bool(probs[b, d, h, w] > 0.5)
            assert in_target != predicted  # an error voxel
            assert int(clicks.labels[b, 0]) == int(in_target)  # FN -> 1, FP -> 0


def test_box_matches_numpy_extent(real_targets: tuple[torch.Tensor, list[str]]) -> None:
    masks, _ = real_targets
    box = box_from_mask(masks)
    for b in range(masks.shape[0]):
        idx = np.argwhere(masks[b].numpy())
        assert box[b].tolist() == [*idx.min(0).tolist(), *idx.max(0).tolist()]

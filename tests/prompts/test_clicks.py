"""Click rules on hand-built masks, including the empty and no-error cases."""

from __future__ import annotations

import pytest
import torch

from neurosam3d.prompts import (
    CLICK_RULES,
    NOT_A_POINT,
    Clicks,
    box_from_mask,
    center_error_click,
    get_click_rule,
    random_error_click,
)

SHAPE = (12, 12, 12)


def _empty(batch: int = 1) -> torch.Tensor:
    return torch.zeros((batch, *SHAPE), dtype=torch.bool)


def _two_blobs() -> torch.Tensor:
    """A 3x3x3 cube at [2:5]^3 and a separate single voxel at (9, 9, 9)."""
    t = _empty()
    t[0, 2:5, 2:5, 2:5] = True
    t[0, 9, 9, 9] = True
    return t


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _voxel(clicks: Clicks, b: int = 0) -> tuple[int, int, int]:
    return tuple(int(v) for v in clicks.coords[b, 0].round())  # type: ignore[return-value]


@pytest.mark.parametrize("rule", sorted(CLICK_RULES))
def test_first_click_lies_in_largest_component(rule: str) -> None:
    target = _two_blobs()
    for seed in range(20):
        clicks = get_click_rule(rule)(target, None, generator=_gen(seed))
        assert clicks.coords.shape == (1, 1, 3) and clicks.coords.dtype == torch.float32
        assert clicks.labels.shape == (1, 1) and int(clicks.labels) == 1
        d, h, w = _voxel(clicks)
        assert 2 <= d < 5 and 2 <= h < 5 and 2 <= w < 5


def test_center_first_click_is_cube_centre() -> None:
    assert _voxel(center_error_click(_two_blobs())) == (3, 3, 3)


def test_random_click_labels_follow_error_type() -> None:
    target = _empty()
    target[0, 0:6] = True
    probs = torch.zeros((1, *SHAPE))
    probs[0, 3:9] = 0.9  # FN: d in [0, 3), FP: d in [6, 9)
    seen = set()
    for seed in range(40):
        clicks = random_error_click(target, probs, generator=_gen(seed))
        d = _voxel(clicks)[0]
        label = int(clicks.labels)
        assert (d < 3 and label == 1) or (6 <= d < 9 and label == 0), (d, label)
        seen.add(label)
    assert seen == {0, 1}


def test_random_click_is_reproducible_and_seed_dependent() -> None:
    target = _empty()
    target[0, 1:11, 1:11, 1:11] = True
    draws = [_voxel(random_error_click(target, generator=_gen(s))) for s in range(5)]
    again = [_voxel(random_error_click(target, generator=_gen(s))) for s in range(5)]
    assert draws == again
    assert len(set(draws)) > 1


def test_probabilities_are_thresholded_not_logits() -> None:
    target = _empty()
    target[0, 4:8, 4:8, 4:8] = True
    probs = target.float() * 0.55  # p = 0.55 is a positive prediction: no error
    probs[0, 0, 0, 0] = 0.45  # below 0.5: not predicted, no FP
    clicks = random_error_click(target, probs, generator=_gen(0))
    d, h, w = _voxel(clicks)
    assert int(clicks.labels) == 1 and 4 <= d < 8 and 4 <= h < 8 and 4 <= w < 8
    with pytest.raises(ValueError, match="logits"):
        random_error_click(target, probs * 10 - 3)


def test_center_click_picks_largest_error_region_and_its_centre() -> None:
    target = _empty()
    target[0, 1:6, 1:6, 1:6] = True  # 5^3 target, nothing predicted there: FN cube
    probs = torch.zeros((1, *SHAPE))
    probs[0, 8:11, 8:11, 8:11] = 1.0  # 3^3 FP cube
    clicks = center_error_click(target, probs)
    assert _voxel(clicks) == (3, 3, 3) and int(clicks.labels) == 1
    probs[0, 6:12, 6:12, 6:12] = 1.0  # now a 6^3 FP block (216 > 125): negative click
    clicks = center_error_click(target, probs)
    assert int(clicks.labels) == 0
    d, h, w = _voxel(clicks)
    assert 8 <= d <= 9 and 8 <= h <= 9 and 8 <= w <= 9  # centre of [6, 12) with border padding


def test_center_click_counts_volume_border_as_boundary() -> None:
    target = _empty()
    target[0, 0:5, 0:5, 0:5] = True  # touches the crop corner
    assert _voxel(center_error_click(target)) == (2, 2, 2)


def test_a_one_slice_mask_is_two_dimensional() -> None:
    """``B x 1 x H x W`` (the slice2d protocol): the centre is the 2-D one, not a corner that a
    padded depth axis would make as deep as any other pixel; components are 8-connected."""
    target = torch.zeros((1, 1, 11, 15), dtype=torch.bool)
    target[0, 0, 2:9, 5:12] = True  # 7 x 7 square, centre (5, 8)
    target[0, 0, 0, 0] = True  # a lone pixel: the rectangle is the largest component
    assert _voxel(center_error_click(target)) == (0, 5, 8)
    diagonal = torch.zeros((1, 1, 6, 6), dtype=torch.bool)
    diagonal[0, 0, [0, 1, 2, 3], [0, 1, 2, 3]] = True  # one 8-connected component of 4 pixels
    diagonal[0, 0, 5, 5] = diagonal[0, 0, 5, 4] = True  # a 2-pixel one
    for seed in range(10):
        _, h, w = _voxel(random_error_click(diagonal, None, generator=_gen(seed)))
        assert h == w and h < 4


@pytest.mark.parametrize("rule", sorted(CLICK_RULES))
def test_no_error_falls_back_to_positive_click_in_largest_component(rule: str) -> None:
    target = _two_blobs()
    clicks = get_click_rule(rule)(target, target.float(), generator=_gen(1))
    d, h, w = _voxel(clicks)
    assert int(clicks.labels) == 1 and 2 <= d < 5 and 2 <= h < 5 and 2 <= w < 5


@pytest.mark.parametrize("rule", sorted(CLICK_RULES))
def test_empty_target_and_prediction_give_not_a_point_at_centre(rule: str) -> None:
    clicks = get_click_rule(rule)(_empty(), torch.zeros((1, *SHAPE)), generator=_gen(0))
    assert int(clicks.labels) == NOT_A_POINT
    assert clicks.coords[0, 0].tolist() == [5.5, 5.5, 5.5]
    first = get_click_rule(rule)(_empty(), None, generator=_gen(0))
    assert int(first.labels) == NOT_A_POINT


@pytest.mark.parametrize("rule", sorted(CLICK_RULES))
def test_empty_target_with_false_positives_gives_negative_click(rule: str) -> None:
    probs = torch.zeros((1, *SHAPE))
    probs[0, 7, 7, 7:10] = 1.0
    clicks = get_click_rule(rule)(_empty(), probs, generator=_gen(0))
    assert int(clicks.labels) == 0
    assert _voxel(clicks)[:2] == (7, 7) and 7 <= _voxel(clicks)[2] < 10


@pytest.mark.parametrize("rule", sorted(CLICK_RULES))
def test_batch_keeps_one_click_per_item_in_order(rule: str) -> None:
    target = torch.cat((_empty(), _two_blobs(), _empty()), dim=0)[:, None]  # B x 1 x D x H x W
    probs = torch.zeros((3, 1, *SHAPE))
    probs[2, 0, 0, 0, 0] = 1.0  # item 2: one FP voxel at the origin
    clicks = get_click_rule(rule)(target, probs, generator=_gen(0))
    assert clicks.coords.shape == (3, 1, 3) and clicks.labels.shape == (3, 1)
    assert clicks.labels[:, 0].tolist() == [NOT_A_POINT, 1, 0]
    assert _voxel(clicks, 2) == (0, 0, 0)


def test_shape_mismatch_and_unknown_rule_are_rejected() -> None:
    with pytest.raises(ValueError, match="differs"):
        random_error_click(_empty(), torch.zeros((1, 12, 12, 11)))
    with pytest.raises(ValueError, match="B x D x H x W"):
        random_error_click(torch.zeros(SHAPE, dtype=torch.bool))
    with pytest.raises(KeyError, match="random_error"):
        get_click_rule("nearest")


def test_clicks_append_concatenates_along_points() -> None:
    a = Clicks(torch.zeros(2, 1, 3), torch.ones(2, 1, dtype=torch.long))
    b = Clicks(torch.ones(2, 2, 3), torch.zeros(2, 2, dtype=torch.long))
    ab = a.append(b)
    assert ab.coords.shape == (2, 3, 3) and ab.labels[0].tolist() == [1, 0, 0]


def test_box_from_mask_is_inclusive_extent_and_whole_volume_when_empty() -> None:
    target = _empty(2)
    target[0, 2:5, 3:4, 1:11] = True
    box = box_from_mask(target)
    assert box.dtype == torch.float32
    assert box[0].tolist() == [2, 3, 1, 4, 3, 10]
    assert box[1].tolist() == [0, 0, 0, 11, 11, 11]

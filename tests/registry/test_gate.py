"""The promotion gate on hand-made scores."""

from __future__ import annotations

import math

import pytest

from neurosam3d.registry.gate import EvalScores, compare

M = "m" * 64
P = "p" * 64


def scores(mean: float, **categories: float) -> EvalScores:
    return EvalScores(M, 5, mean, categories, P)


def test_first_model_passes_without_champion() -> None:
    assert compare(None, scores(0.1, bone=0.1), margin=0.02).passed


def test_better_everywhere_passes() -> None:
    result = compare(scores(0.5, bone=0.5, muscle=0.4), scores(0.6, bone=0.6, muscle=0.5), 0.02)
    assert result.passed
    assert [r.name for r in result.rows] == ["mean", "bone", "muscle"]


def test_category_drop_within_margin_passes_beyond_fails() -> None:
    champion = scores(0.50, bone=0.50, muscle=0.50)
    assert compare(champion, scores(0.51, bone=0.49, muscle=0.53), 0.02).passed
    failed = compare(champion, scores(0.51, bone=0.47, muscle=0.56), 0.02)
    assert not failed.passed
    assert any("bone" in r for r in failed.reasons)
    assert [r.passed for r in failed.rows] == [True, False, True]


def test_mean_must_not_drop() -> None:
    result = compare(scores(0.50, bone=0.5), scores(0.499, bone=0.5), margin=0.5)
    assert not result.passed
    assert "mean" in result.reasons[0]


def test_missing_challenger_category_fails_missing_champion_category_is_free() -> None:
    assert not compare(scores(0.5, bone=0.5), scores(0.6), 0.02).passed
    assert not compare(scores(0.5, bone=0.5), scores(0.6, bone=math.nan), 0.02).passed
    assert compare(scores(0.5, bone=math.nan), scores(0.6, gland=0.1), 0.02).passed


def test_different_manifest_or_clicks_fails() -> None:
    other = EvalScores("x" * 64, 5, 0.9, {"bone": 0.9}, P)
    assert "different manifests" in compare(scores(0.1, bone=0.1), other, 0.02).reasons[0]
    clicks = EvalScores(M, 10, 0.9, {"bone": 0.9}, P)
    assert not compare(scores(0.1, bone=0.1), clicks, 0.02).passed


def test_better_challenger_under_another_protocol_is_not_comparable() -> None:
    # Same manifest and clicks, but e.g. random_error at native spacing vs center_error at 1.5 mm.
    other_protocol = EvalScores(M, 5, 0.9, {"bone": 0.9}, "q" * 64)
    result = compare(scores(0.1, bone=0.1), other_protocol, 0.02)
    assert not result.passed and not result.comparable
    assert "different protocols" in result.reasons[0]
    table = result.table_markdown()
    assert table.startswith("**NOT COMPARABLE**") and "different protocols" in table
    assert "| bone | 0.1000 | 0.9000 | +0.8000 | n/a | 0 | 0.020 | not comparable |" in table
    assert compare(scores(0.1, bone=0.1), scores(0.9, bone=0.9), 0.02).comparable


def test_scores_without_protocol_fingerprint_compare_with_nothing() -> None:
    legacy = EvalScores(M, 5, 0.1, {"bone": 0.1})  # registered before fingerprints
    for champion, challenger, who in [
        (legacy, scores(0.9, bone=0.9), "champion"),
        (scores(0.1, bone=0.1), EvalScores(M, 5, 0.9, {"bone": 0.9}), "challenger"),
        (legacy, EvalScores(M, 5, 0.9, {"bone": 0.9}), "champion and challenger"),
    ]:
        result = compare(champion, challenger, 0.02)
        assert not result.passed and not result.comparable
        assert f"no evaluation protocol fingerprint on the {who} " in result.reasons[0]


def test_negative_margin_rejected() -> None:
    with pytest.raises(ValueError, match="margin"):
        compare(None, scores(0.1), -0.1)


def test_table_marks_worse_rows() -> None:
    table = compare(scores(0.5, bone=0.5), scores(0.5, bone=0.1), 0.02).table_markdown()
    assert "| bone | 0.5000 | 0.1000 | -0.4000 | n/a | 0 | 0.020 | WORSE |" in table


def _with_targets(dice: dict[str, list[float]]) -> EvalScores:
    """Scores whose mean and categories are the means of hand-built per-target Dice."""
    from neurosam3d.registry.gate import TargetScore

    targets = tuple(
        TargetScore(f"ds/Val/case{i:02d}/{category}", category, value)
        for category, values in dice.items()
        for i, value in enumerate(values)
    )
    every = [t.dice for t in targets]
    means = {c: sum(v) / len(v) for c, v in dice.items()}
    return EvalScores(M, 5, sum(every) / len(every), means, P, targets)


#: Twelve targets of two categories with a realistic spread of Dice.
CHAMPION = {
    "bone": [0.62, 0.71, 0.55, 0.80, 0.47, 0.66],
    "gland": [0.58, 0.74, 0.69, 0.51, 0.77, 0.63],
}


def test_gate_refuses_a_challenger_whose_advantage_is_within_noise() -> None:
    # A higher mean (+0.005), but per target it wins big on some and loses big on others.
    swings = [0.15, -0.14, 0.12, -0.13, 0.16, -0.14]
    noisy = {
        c: [v + d for v, d in zip(values, swings, strict=True)] for c, values in CHAMPION.items()
    }
    result = compare(_with_targets(CHAMPION), _with_targets(noisy), margin=0.02)
    mean = result.rows[0]
    assert mean.delta > 0 and mean.targets == 12
    assert mean.low < -0.02 < 0 < mean.high  # the interval spans a drop beyond the margin
    assert not result.passed and "lower bound" in result.reasons[0]
    table = result.table_markdown()
    assert f"[{mean.low:+.4f}, {mean.high:+.4f}] | 12 |" in table


def test_gate_accepts_a_clearly_better_challenger_and_is_seeded() -> None:
    gains = [0.10, 0.08, 0.12, 0.09, 0.11, 0.07]
    better = {
        c: [v + d for v, d in zip(values, gains, strict=True)] for c, values in CHAMPION.items()
    }
    result = compare(_with_targets(CHAMPION), _with_targets(better), margin=0.02, seed=7)
    assert result.passed, result.reasons
    assert all(r.low > 0 for r in result.rows)  # mean and both categories: better beyond noise
    again = compare(_with_targets(CHAMPION), _with_targets(better), margin=0.02, seed=7)
    assert [(r.low, r.high) for r in again.rows] == [(r.low, r.high) for r in result.rows]


def test_gate_refuses_a_category_drop_beyond_its_own_margin() -> None:
    mixed = {
        "bone": [v + 0.2 for v in CHAMPION["bone"]],
        "gland": [v - 0.05 for v in CHAMPION["gland"]],
    }
    champion, challenger = _with_targets(CHAMPION), _with_targets(mixed)
    assert compare(champion, challenger, margin=0.06).passed  # mean clearly up, gland -0.05
    strict = compare(champion, challenger, margin=0.06, margins={"gland": 0.02})
    assert not strict.passed and "'gland' dropped by 0.0500" in strict.reasons[0]

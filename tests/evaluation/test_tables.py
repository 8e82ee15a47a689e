"""Aggregation on a hand-built results table: final-click means, AUC, seen/unseen lesion columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from neurosam3d.evaluation.tables import (
    aggregate,
    category_table,
    dice_curve,
    markdown,
    per_target,
    write_tables,
)


def _rows(case: str, category: str, seen: bool, dice: list[float]) -> list[dict]:
    return [
        {
            "model": "m",
            "dataset": "D",
            "split": "Ts",
            "case_id": case,
            "class_name": f"{category}_{case}",
            "modality": "CT",
            "category": category,
            "seen": seen,
            "click": k,
            "dice": d,
            "nsd": d / 2,
        }
        for k, d in enumerate(dice, start=1)
    ]


@pytest.fixture
def results() -> pd.DataFrame:
    rows = (
        _rows("a", "lesion", True, [0.2, 0.4, 0.6])
        + _rows("b", "lesion", False, [0.1, 0.1, 0.1])
        + _rows("c", "bone", False, [0.5, 0.9, 0.7])
        + _rows("d", "bone", False, [math.nan, math.nan, math.nan])
    )
    return pd.DataFrame(rows)


def test_per_target_reports_clicks_and_auc(results):
    targets = per_target(results).set_index("case_id")
    assert targets.loc["c", "dice_1"] == 0.5 and targets.loc["c", "dice_3"] == 0.7
    # Trapezoid over clicks 1..3 divided by the curve length: (0.5+0.9)/2 + (0.9+0.7)/2 = 1.5 -> 0.75
    assert targets.loc["c", "dice_auc"] == pytest.approx(0.75)
    assert "dice_5" not in targets.columns  # only 3 clicks were run


def test_aggregates_skip_nan_and_split_lesions_by_seen(results):
    targets = per_target(results)
    by_category = aggregate(targets, ["model", "category"]).set_index("category")
    assert by_category.loc["bone", "targets"] == 2
    assert by_category.loc["bone", "dice_3"] == pytest.approx(0.7)  # NaN target left out
    table = category_table(targets).set_index("Prompt")
    assert table.loc["3 points", "Seen Lesion"] == pytest.approx(60.0)
    assert table.loc["3 points", "Unseen Lesion"] == pytest.approx(10.0)
    assert table.loc["1 point", "Bone"] == pytest.approx(50.0)
    assert np.isnan(table.loc["1 point", "Brain"])
    text = markdown(category_table(targets), digits=2)
    assert "| m | 3 points | - | 70.00 | - |" in text


def test_dice_curve_is_the_nan_skipping_mean_per_click(results, tmp_path):
    curve = dice_curve(results).set_index("click")
    # click 2: (0.4 + 0.1 + 0.9) / 3, the NaN target left out
    assert curve.loc[2, "dice"] == pytest.approx(1.4 / 3)
    assert curve.loc[2, "nsd"] == pytest.approx(0.7 / 3)
    assert list(curve.index) == [1, 2, 3]
    written = write_tables(results, tmp_path)
    on_disk = pd.read_csv(written["dice_vs_clicks"])
    assert list(on_disk.columns) == ["model", "click", "dice", "nsd"]
    np.testing.assert_allclose(on_disk["dice"], curve["dice"], atol=1e-6)

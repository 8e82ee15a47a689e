"""Aggregate per-click results into tables (CSV and Markdown).

Every aggregate is a mean over targets (one target = one (dataset, case, class)) of the target's
score at a given click, ignoring NaN (the empty-mask policy of :mod:`.metrics`). Reported clicks
are 1, 3, 5 and 10 (those not above the number of clicks run). ``dice_auc`` is the area under a
target's Dice-vs-clicks curve from click 1 to the last, divided by its length (the mean height of
the curve, in [0, 1]; a single click gives that click's Dice).

Tables written by :func:`write_tables` (``<name>.csv`` and ``<name>.md``):

* ``categories``: the seed README's layout, rows (model, prompt count), columns the anatomical
  categories of docs/TAXONOMY.md with lesions split into seen and unseen, Dice in percent; the
  prompt count of a ``slice2d`` model is per prompted slice ("N points", "3N points"...: N = the
  slices containing the target), of a 3-D one per volume ("1 point", "3 points"...);
* ``by_class``, ``by_dataset``, ``by_modality``, ``by_category`` (category x seen/unseen): long
  tables with the number of targets, Dice and NSD at each reported click and ``dice_auc``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from neurosam3d.evaluation.protocol import SLICE2D
from neurosam3d.io.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

REPORT_CLICKS = (1, 3, 5, 10)
TARGET_KEYS = ["model", "dataset", "split", "case_id", "class_name"]
#: Seed README column order; lesions are split by the seen flag.
CATEGORY_COLUMNS = {
    "abdomen_thorax": "A&T",
    "bone": "Bone",
    "brain": "Brain",
    "cardiac": "Cardiac",
    "gland": "Gland",
    "muscle": "Muscle",
}
SEEN_LESION, UNSEEN_LESION = "Seen Lesion", "Unseen Lesion"
GROUPINGS = {
    "by_class": ["model", "dataset", "class_name", "category"],
    "by_dataset": ["model", "dataset"],
    "by_modality": ["model", "modality"],
    "by_category": ["model", "category", "seen"],
}


def report_clicks(results: pd.DataFrame) -> list[int]:
    """The reported click counts available in ``results`` (always includes the last click run)."""
    last = int(results["click"].max())
    return sorted({c for c in REPORT_CLICKS if c <= last} | {last})


def per_target(results: pd.DataFrame) -> pd.DataFrame:
    """One row per target: grouping columns, ``dice_<k>``/``nsd_<k>`` at reported clicks, ``dice_auc``."""
    clicks = report_clicks(results)
    ordered = results.sort_values([*TARGET_KEYS, "click"])
    wide = ordered.set_index([*TARGET_KEYS, "click"])[["dice", "nsd"]].unstack("click")
    columns = ["modality", "category", "seen"] + (["protocol"] if "protocol" in results else [])
    out = ordered.groupby(TARGET_KEYS, sort=True)[columns].first()
    for k in clicks:
        out[f"dice_{k}"] = wide[("dice", k)]
        out[f"nsd_{k}"] = wide[("nsd", k)]
    dice = wide["dice"].to_numpy(dtype=np.float64)
    if dice.shape[1] == 1:
        out["dice_auc"] = dice[:, 0]
    else:
        out["dice_auc"] = np.trapezoid(dice, dx=1.0, axis=1) / (dice.shape[1] - 1)
    return out.reset_index()


def aggregate(targets: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean scores of :func:`per_target` rows grouped ``by``, with the number of targets."""
    scores = [c for c in targets.columns if c.startswith(("dice_", "nsd_"))]
    grouped = targets.groupby(by, sort=True, dropna=False)
    table = grouped[scores].mean()  # pandas' mean skips NaN
    table.insert(0, "targets", grouped.size())
    return table.reset_index()


def _category_column(category: str, seen: bool) -> str:
    if category == "lesion":
        return SEEN_LESION if seen else UNSEEN_LESION
    return CATEGORY_COLUMNS.get(category, category.replace("_", " ").title())


def category_table(targets: pd.DataFrame) -> pd.DataFrame:
    """The seed README's table: rows (Model, Prompt), category columns, Dice in percent."""
    frame = targets.assign(
        column=[
            _category_column(c, s)
            for c, s in zip(targets["category"], targets["seen"], strict=True)
        ]
    )
    standard = [*CATEGORY_COLUMNS.values(), SEEN_LESION, UNSEEN_LESION]
    extra = sorted(set(frame["column"]) - set(standard))
    rows = []
    for model, group in frame.groupby("model", sort=True):
        per_slice = "protocol" in group and (group["protocol"] == SLICE2D).all()
        prompts = [(f"dice_{k}", prompt_label(k, per_slice)) for k in report_clicks_from(targets)]
        prompts.append(("dice_auc", "AUC"))
        for key, label in prompts:
            means = group.groupby("column")[key].mean()
            rows.append(
                {
                    "Model": model,
                    "Prompt": label,
                    **{c: 100.0 * means.get(c, np.nan) for c in standard + extra},
                }
            )
    return pd.DataFrame(rows, columns=["Model", "Prompt", *standard, *extra])


def prompt_label(clicks: int, per_slice: bool = False) -> str:
    """The ``Prompt`` cell of ``clicks`` clicks: "1 point", "3 points"; per slice (``slice2d``)
    "N points", "3N points" (N: the slices containing the target)."""
    if per_slice:
        return f"{'' if clicks == 1 else clicks}N points"
    return f"{clicks} point" + ("s" if clicks > 1 else "")


def report_clicks_from(targets: pd.DataFrame) -> list[int]:
    """Reported click counts present as ``dice_<k>`` columns of :func:`per_target` rows."""
    return sorted(
        int(c.split("_")[1]) for c in targets.columns if c.startswith("dice_") and c != "dice_auc"
    )


def markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub Markdown table; NaN is written ``-`` (as in the seed README)."""

    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return "-" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = (
        "|" + "|".join("---" if table[c].dtype == object else "---:" for c in table.columns) + "|"
    )
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def dice_curve(results: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice and NSD over all targets after every click, per model (one row per click).

    The long form ``dvc plots show`` draws (``x: click``, ``y: dice``); targets whose score is
    NaN (empty reference and prediction) are left out of the means, as everywhere else.
    """
    curve = results.groupby(["model", "click"], sort=True)[["dice", "nsd"]].mean()
    return curve.reset_index()


def write_tables(results: pd.DataFrame, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every table as CSV and Markdown under ``out_dir``; return ``{name: csv path}``."""
    out_dir = Path(out_dir)
    targets = per_target(results)
    tables = {"categories": (category_table(targets), 2)}
    tables.update({name: (aggregate(targets, by), 4) for name, by in GROUPINGS.items()})
    tables["dice_vs_clicks"] = (dice_curve(results), 4)
    written = {}
    for name, (table, digits) in tables.items():
        csv = table.to_csv(index=False, float_format="%.6f", lineterminator="\n")
        atomic_write_bytes(out_dir / f"{name}.csv", csv.encode())
        atomic_write_bytes(out_dir / f"{name}.md", markdown(table, digits).encode())
        written[name] = out_dir / f"{name}.csv"
    logger.info("wrote %d tables to %s", len(written), out_dir)
    return written

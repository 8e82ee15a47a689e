"""Per-click evaluation results: one row per (model, dataset, case, class, click), in Parquet.

Columns (``RESULTS_SCHEMA``): identity (model, dataset, split, case_id, class_name), grouping
(modality, category, seen), the click number (1-based), Dice and NSD in [0, 1] on the original
grid (NaN per the empty-mask policy of :mod:`.metrics`), voxel counts of prediction, reference and
their overlap, the windows (``windows``: holding a prediction or overlapping the stitched mask;
``windows_predicted``: holding a prediction; ``seeded_clicks``: clicks seeded from a
neighbour's mask, not simulated clicks; for ``slice2d`` both window counts are the prompted
slices and a click is a round, one click per slice), and the protocol (``protocol``: ``full``,
``sam-med3d`` or ``slice2d``, click rule, seed, NSD tolerance in mm). Rows
are sorted by the identity columns and the click, and written without timestamps, so the same
results give the same bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neurosam3d.io.atomic import atomic_write_bytes

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("seen", pa.bool_(), nullable=False),  # (dataset, class) in the training manifest
        pa.field("click", pa.int32(), nullable=False),  # 1-based
        pa.field("dice", pa.float64()),
        pa.field("nsd", pa.float64()),
        pa.field("pred_voxels", pa.int64(), nullable=False),
        pa.field("ref_voxels", pa.int64(), nullable=False),
        pa.field("true_positive_voxels", pa.int64(), nullable=False),
        pa.field("windows", pa.int32(), nullable=False),
        pa.field("windows_predicted", pa.int32(), nullable=False),
        pa.field("seeded_clicks", pa.int32(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("click_rule", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("nsd_tolerance_mm", pa.float64(), nullable=False),
    ],
    metadata={b"neurosam3d.schema": b"evaluation-results/2"},
)

SORT_KEYS = ["model", "dataset", "split", "case_id", "class_name", "click"]


def results_table(rows: Iterable[dict]) -> pa.Table:
    """Rows (dicts keyed by the schema's columns) as a sorted table of ``RESULTS_SCHEMA``."""
    table = pa.Table.from_pylist(list(rows), schema=RESULTS_SCHEMA)
    return table.sort_by([(k, "ascending") for k in SORT_KEYS])


def write_results(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` as Parquet atomically and deterministically; return the path."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=False)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results file written by :func:`write_results` as a DataFrame."""
    return pq.read_table(path, schema=RESULTS_SCHEMA).to_pandas()

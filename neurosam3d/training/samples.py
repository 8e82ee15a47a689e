"""Manifest rows selected for training or validation, held as numpy arrays.

Rows are kept as fixed-width numpy arrays (``<U`` strings, integer vectors), never as Python lists
of ``str``: a DataLoader worker forked from the main process then shares these pages instead of
copying them whenever a string's reference count changes (the seed's per-worker memory growth).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neurosam3d.data.schema import MANIFEST_SCHEMA, check_schema

logger = logging.getLogger(__name__)

_KEYS = ["dataset", "split", "case_id", "class_name"]


@dataclass(frozen=True)
class SampleFilter:
    """Row filters; ``None`` keeps every value. Sizes are the target's voxel count and mm^3."""

    splits: Sequence[str] | None = None
    datasets: Sequence[str] | None = None
    classes: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    cases: Sequence[str] | None = None
    min_voxels: int = 1
    min_volume_mm3: float = 0.0


def read_manifests(paths: Sequence[str | Path], where: SampleFilter) -> pa.Table:
    """Concatenate Parquet manifests, check their schema, filter and sort the rows.

    Rows are sorted by (dataset, split, case_id, class_name) and de-duplicated on those keys, so
    the order (and hence sampling) does not depend on the order of ``paths``.
    """
    if not paths:
        raise ValueError("no manifest given: set data.train_manifests / data.val_manifests")
    tables = []
    for path in paths:
        table = pq.read_table(path)
        check_schema(table, MANIFEST_SCHEMA, str(path))
        tables.append(table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA))
    table = pa.concat_tables(tables)
    mask = pc.and_(
        pc.greater_equal(table["voxel_count"], where.min_voxels),
        pc.greater_equal(table["volume_mm3"], where.min_volume_mm3),
    )
    for column, allowed in (
        ("split", where.splits),
        ("dataset", where.datasets),
        ("class_name", where.classes),
        ("category", where.categories),
        ("case_id", where.cases),
    ):
        if allowed is not None:
            mask = pc.and_(mask, pc.is_in(table[column], value_set=pa.array(list(allowed))))
    table = table.filter(mask).sort_by([(k, "ascending") for k in _KEYS])
    keys = np.array(
        ["\x00".join(r) for r in zip(*(table[k].to_pylist() for k in _KEYS), strict=True)]
    )
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    if not first.all():
        logger.warning("dropped %d duplicate manifest rows", int((~first).sum()))
        table = table.filter(pa.array(first))
    logger.info("selected %d manifest rows from %d file(s)", table.num_rows, len(paths))
    return table


@dataclass(frozen=True)
class SampleTable:
    """Selected rows as arrays of length ``n`` (paths relative to ``root``).

    ``bbox_min``/``bbox_max``/``shape``: ``n x 3`` int64 voxel indices along (i, j, k), bbox max
    exclusive; ``spacing``: ``n x 3`` float64 mm.
    """

    root: str
    dataset: np.ndarray
    split: np.ndarray
    case_id: np.ndarray
    class_name: np.ndarray
    modality: np.ndarray
    image_path: np.ndarray
    mask_path: np.ndarray
    mask_sha256: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    shape: np.ndarray
    spacing: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table, root: str | Path) -> SampleTable:
        """Build from a manifest table (see :func:`read_manifests`)."""

        def strings(name: str) -> np.ndarray:
            return np.array(table[name].to_pylist(), dtype=np.str_)

        def vectors(name: str, dtype: type) -> np.ndarray:
            return np.array(table[name].to_pylist(), dtype=dtype).reshape(-1, 3)

        return cls(
            root=str(Path(root)),
            dataset=strings("dataset"),
            split=strings("split"),
            case_id=strings("case_id"),
            class_name=strings("class_name"),
            modality=strings("modality"),
            image_path=strings("image_path"),
            mask_path=strings("mask_path"),
            mask_sha256=strings("mask_sha256"),
            bbox_min=vectors("bbox_min", np.int64),
            bbox_max=vectors("bbox_max", np.int64),
            shape=vectors("shape", np.int64),
            spacing=vectors("spacing", np.float64),
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def subset(self, rows: np.ndarray) -> SampleTable:
        """The rows at integer positions ``rows``, in that order."""
        fields = {k: v[rows] for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        return SampleTable(root=self.root, **fields)


def sampling_weights(
    table: SampleTable,
    dataset_weights: dict[str, float] | None = None,
    class_weights: dict[str, float] | None = None,
) -> np.ndarray:
    """Probability of drawing each row: ``n`` float64 summing to 1.

    Each dataset gets a share proportional to its weight (default 1) regardless of its size;
    within a dataset each class gets an equal share times its class weight (default 1); within a
    (dataset, class) every case is equally likely.
    """
    if len(table) == 0:
        raise ValueError("no manifest rows left after filtering: nothing to sample")
    dataset_weights = dataset_weights or {}
    class_weights = class_weights or {}
    weights = np.zeros(len(table), dtype=np.float64)
    for ds in np.unique(table.dataset):
        in_ds = table.dataset == ds
        classes = np.unique(table.class_name[in_ds])
        cw = np.array([class_weights.get(str(c), 1.0) for c in classes])
        if cw.sum() <= 0:
            continue
        for c, w in zip(classes, cw / cw.sum(), strict=True):
            rows = in_ds & (table.class_name == c)
            weights[rows] = dataset_weights.get(str(ds), 1.0) * w / rows.sum()
    if weights.sum() <= 0:
        raise ValueError("all sampling weights are zero: check data.dataset_weights/class_weights")
    return weights / weights.sum()


def manifest_hash(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the manifests' bytes, in sorted path order (a run's data fingerprint)."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()

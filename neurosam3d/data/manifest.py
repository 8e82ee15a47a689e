"""Parquet tables: per-dataset manifests, absent classes and quarantine, and the combined ones.

Under the output root (docs/manifest.md):
``manifests/<dataset>_<split>.parquet`` (one per split the dataset has),
``manifests/<dataset>_absent.parquet``, ``manifests/<dataset>_quarantine.parquet``,
``manifests/<dataset>_store.parquet`` (training store, one row per case), and the combined
``manifest.parquet``, ``absent.parquet``, ``quarantine.parquet`` and ``store.parquet``, rebuilt from every
per-dataset file in ``manifests/`` so that they cover all datasets prepared into the root. Each
file carries its schema name in its metadata; rows are sorted, so the same rows give the same
bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from neurosam3d.data.schema import (
    ABSENT_SCHEMA,
    MANIFEST_SCHEMA,
    QUARANTINE_SCHEMA,
    SPLITS,
    STORE_SCHEMA,
    check_schema,
)
from neurosam3d.io.atomic import TMP_MARKER, atomic_write_bytes

MANIFESTS_DIR = "manifests"
COMBINED = {
    MANIFEST_SCHEMA: "manifest.parquet",
    ABSENT_SCHEMA: "absent.parquet",
    QUARANTINE_SCHEMA: "quarantine.parquet",
    STORE_SCHEMA: "store.parquet",
}
_SORT = {
    MANIFEST_SCHEMA: ["dataset", "split", "case_id", "class_name"],
    ABSENT_SCHEMA: ["dataset", "split", "case_id", "class_name"],
    QUARANTINE_SCHEMA: ["dataset", "case_id", "class_name", "path", "kind", "problem"],
    STORE_SCHEMA: ["dataset", "split", "case_id"],
}
_SCHEMA_KEY = b"neurosam3d.schema"


def sort_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (of ``schema``) in the one row order of its kind (see the module docstring)."""
    if table.num_rows:
        table = table.sort_by([(c, "ascending") for c in _SORT[schema]])
    return table


def sorted_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return sort_table(pa.Table.from_pylist(rows, schema=schema), schema)


def schema_of(table: pa.Table) -> pa.Schema | None:
    """Which of the table kinds (:data:`COMBINED`'s schemas) ``table`` says it is, if any."""
    found = (table.schema.metadata or {}).get(_SCHEMA_KEY)
    return next((s for s in COMBINED if s.metadata[_SCHEMA_KEY] == found), None)


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` atomically as zstd Parquet (deterministic for the same rows).

    A file that already holds exactly these bytes is left alone (same mtime, same inode: a DVC
    cache link stays intact and an unchanged dataset's files do not look touched).
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data, durable=False)


def dataset_table_paths(out_root: Path, dataset: str) -> dict[str, Path]:
    """Per-dataset files: each split, ``absent`` and ``quarantine``."""
    folder = out_root / MANIFESTS_DIR
    names = [*SPLITS, "absent", "quarantine", "store"]
    return {name: folder / f"{dataset}_{name}.parquet" for name in names}


def write_dataset_tables(
    out_root: Path,
    dataset: str,
    rows_by_split: dict[str, list[dict[str, Any]]],
    absent: list[dict[str, Any]],
    problems: list[dict[str, Any]],
    store: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write a dataset's per-split manifests (only its splits; others removed), absent,
    quarantine and training-store (:mod:`neurosam3d.store`) tables."""
    paths = dataset_table_paths(out_root, dataset)
    written = {}
    for split in SPLITS:
        if split in rows_by_split:
            write_table(sorted_table(rows_by_split[split], MANIFEST_SCHEMA), paths[split])
            written[split] = paths[split]
        else:
            paths[split].unlink(missing_ok=True)
    write_table(sorted_table(absent, ABSENT_SCHEMA), paths["absent"])
    write_table(sorted_table(problems, QUARANTINE_SCHEMA), paths["quarantine"])
    write_table(sorted_table(store or [], STORE_SCHEMA), paths["store"])
    return written | {k: paths[k] for k in ("absent", "quarantine", "store")}


@contextlib.contextmanager
def _locked(out_root: Path) -> Iterator[None]:
    lock = out_root / MANIFESTS_DIR / ".tables.neurosam3d-lock"  # left out of DVC hashes
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def rebuild_combined(
    out_root: Path, schemas: tuple[pa.Schema, ...] = tuple(COMBINED)
) -> dict[str, Path]:
    """Rebuild the combined tables of ``schemas`` (default: ``manifest.parquet``,
    ``absent.parquet``, ``quarantine.parquet`` and ``store.parquet``) from ``manifests/``.

    Serialised by a file lock, so datasets prepared concurrently into one root do not lose rows.
    """
    with _locked(out_root):
        for name in (COMBINED[s] for s in schemas):  # left by a run killed while writing them
            for stale in out_root.glob(f".{name}{TMP_MARKER}*"):
                stale.unlink(missing_ok=True)
        parts: dict[pa.Schema, list[pa.Table]] = {schema: [] for schema in schemas}
        for path in sorted((out_root / MANIFESTS_DIR).glob("*.parquet")):
            table = pq.read_table(path)
            for schema in schemas:
                if (table.schema.metadata or {}).get(_SCHEMA_KEY) == schema.metadata[_SCHEMA_KEY]:
                    check_schema(table, schema, str(path))
                    parts[schema].append(table.cast(schema))
        result = {}
        for schema in schemas:
            name = COMBINED[schema]
            tables = parts[schema] or [schema.empty_table()]
            write_table(sort_table(pa.concat_tables(tables), schema), out_root / name)
            result[name] = out_root / name
        return result

"""Combine per-dataset prepare roots into one root's manifests (the pipeline's ``combine`` step).

The pipeline prepares each dataset into its own root, ``SOURCES/<key>/`` (``neurosam3d prepare
--dataset KEY --out SOURCES/KEY``), so that each dataset is its own DVC stage output and one
dataset's change re-runs nothing else. :func:`combine_roots` then writes, under ``OUT`` (a parent
of ``SOURCES``), the per-dataset tables of every source root to ``OUT/manifests/`` with their tree
paths (``image_path``, ``image_paths``, ``mask_path``) re-rooted at ``OUT`` (prefixed with
``SOURCES/<key>/`` relative to ``OUT``), the training store tables' entry and image paths
likewise, and rebuilds the combined ``manifest.parquet``,
``absent.parquet`` and ``quarantine.parquet`` from them. ``OUT`` is then a label-tree root like
any ``prepare --out`` folder (docs/manifest.md); no image or mask is copied.

A source root is a sub-folder of ``SOURCES`` holding a ``manifests/`` folder. A dataset may also
be prepared in N shards, one root each (``SOURCES/<key>-<I>of<N>/``, ``neurosam3d prepare
--shard I/N``): its shards' tables are merged into the dataset's one set of tables, after
checking that all N shards are there, once each, prepared from the same raw case list
(:func:`check_shards`). Tables in ``OUT/manifests/`` that no source root provides any more are
removed. Same inputs, same bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neurosam3d.data.manifest import (
    COMBINED,
    MANIFESTS_DIR,
    rebuild_combined,
    schema_of,
    sort_table,
    write_table,
)
from neurosam3d.data.schema import MANIFEST_SCHEMA, SPLITS, STORE_SCHEMA, check_schema
from neurosam3d.data.shards import (
    ASSIGNMENT,
    ShardRecord,
    claim_path,
    in_shard,
    read_shard_record,
    shard_record_path,
)
from neurosam3d.io.paths import check_name

log = logging.getLogger(__name__)

#: Columns holding tree paths relative to the label-tree root, per table schema: the manifest's
#: and the training store table's (its entry folders and the images they were built from).
_TREE_PATHS = {MANIFEST_SCHEMA: ("image_path", "mask_path"), STORE_SCHEMA: ("entry", "image_path")}
_TREE_PATH_LISTS = {MANIFEST_SCHEMA: ("image_paths",), STORE_SCHEMA: ()}


def source_roots(sources: Path) -> list[Path]:
    """The prepare roots under ``sources`` (sub-folders with a ``manifests/`` folder), sorted."""
    if not sources.is_dir():
        return []
    return sorted(p for p in sources.iterdir() if (p / MANIFESTS_DIR).is_dir())


def _prefixed(table: pa.Table, prefix: str, schema: pa.Schema) -> pa.Table:
    """``table`` (of ``schema``) with its tree-path columns prefixed by ``prefix/``."""
    for name in _TREE_PATHS[schema]:
        index = table.schema.get_field_index(name)
        column = pc.binary_join_element_wise(prefix, table[name], "/")
        table = table.set_column(index, table.schema.field(name), column)
    for name in _TREE_PATH_LISTS[schema]:
        index = table.schema.get_field_index(name)
        values = [[f"{prefix}/{v}" for v in row] for row in table[name].to_pylist()]
        table = table.set_column(
            index, table.schema.field(name), pa.array(values, table.schema.field(name).type)
        )
    return table


def _tree_schema(table: pa.Table) -> pa.Schema | None:
    """The schema (manifest or store table) of ``table`` if it holds tree paths, else None."""
    key = b"neurosam3d.schema"
    found = (table.schema.metadata or {}).get(key)
    return next((s for s in _TREE_PATHS if s.metadata[key] == found), None)


def _dataset_of(table_name: str) -> str | None:
    """``"TotalSeg_Tr.parquet"`` -> ``"TotalSeg"`` (the per-dataset tables' naming), else None."""
    stem, _, kind = table_name.removesuffix(".parquet").rpartition("_")
    return stem if stem and kind in (*SPLITS, "absent", "quarantine", "store") else None


def _shard_of_root(root: Path, dataset: str) -> ShardRecord | None:
    """The shard record of ``dataset`` in ``root`` (None: prepared whole); ``ValueError`` when
    the root was claimed by a shard whose run did not finish (no record yet)."""
    record = shard_record_path(root / MANIFESTS_DIR, dataset)
    if record.exists():
        return read_shard_record(record)
    claim = claim_path(root, dataset)
    if claim.exists():
        raise ValueError(
            f"{root}: shard {claim.read_text().strip()} of dataset {dataset!r} did not finish "
            f"(no {record.name}: its run failed or is still running); rerun it, then combine"
        )
    return None


def check_shards(dataset: str, roots: dict[Path, ShardRecord | None]) -> None:
    """``ValueError`` unless the roots providing ``dataset``'s tables are the dataset prepared
    whole once, or all N shards of one shard count, each once, from the same case list."""
    if len(roots) == 1 and next(iter(roots.values())) is None:
        return
    whole = sorted(str(r) for r, rec in roots.items() if rec is None)
    if whole:
        raise ValueError(
            f"dataset {dataset!r} is provided by {len(roots)} roots, {', '.join(whole)} holding "
            f"it prepared whole: keep one of {', '.join(sorted(map(str, roots)))} (delete the "
            "others' folders, left over from an earlier shard count)"
        )
    records = {root: rec for root, rec in roots.items() if rec is not None}
    counts = sorted({rec.count for rec in records.values()})
    if len(counts) > 1:
        listing = ", ".join(f"{rec.shard} in {root}" for root, rec in sorted(records.items()))
        raise ValueError(
            f"dataset {dataset!r} has shards of {len(counts)} shard counts ({listing}): delete "
            "the folders of the old count"
        )
    count = counts[0]
    by_index: dict[int, list[Path]] = {}
    for root, rec in sorted(records.items()):
        by_index.setdefault(rec.index, []).append(root)
    repeated = {i: rs for i, rs in by_index.items() if len(rs) > 1}
    if repeated:
        i, rs = min(repeated.items())
        raise ValueError(
            f"dataset {dataset!r}: shard {i}/{count} is provided by {len(rs)} roots "
            f"({', '.join(map(str, rs))}): keep one"
        )
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in by_index]
    if missing:
        raise ValueError(
            f"dataset {dataset!r} is prepared in {count} shards but shard(s) "
            f"{', '.join(missing)} are missing (found {', '.join(map(str, sorted(records)))}): "
            "prepare them (neurosam3d prepare --shard I/N, or their DVC stages / Dagster "
            "partitions), then combine"
        )
    seen = {(rec.dataset_cases, rec.dataset_cases_sha256) for rec in records.values()}
    if len(seen) > 1:
        listing = "; ".join(
            f"{rec.shard} ({root}) saw {rec.dataset_cases} cases, {rec.dataset_cases_sha256[:12]}"
            for root, rec in sorted(records.items(), key=lambda item: item[1].index)
        )
        raise ValueError(
            f"dataset {dataset!r}: its shards are stale against each other, they were prepared "
            f"from different raw case lists ({listing}); rerun the shards prepared before the "
            "raw folder changed (a rerun skips unchanged cases), then combine"
        )
    owner: dict[str, str] = {}
    for rec in records.values():
        for case_id in rec.cases:
            if not in_shard(case_id, (rec.index, count)) or case_id in owner:
                raise ValueError(
                    f"dataset {dataset!r}: case {case_id!r} is listed by shard {rec.shard}"
                    + (f" and by shard {owner[case_id]}" if case_id in owner else "")
                    + f", which the assignment ({ASSIGNMENT}) does not give it: rerun the shards"
                )
            owner[case_id] = rec.shard
    ((total, _),) = seen
    if len(owner) != total:
        raise ValueError(
            f"dataset {dataset!r}: its {count} shards list {len(owner)} cases but discovered "
            f"{total}: rerun the shards"
        )


def combine_roots(out_root: str | Path, sources: str | Path) -> dict[str, Path]:
    """Combine every prepare root under ``sources`` (inside ``out_root``) into ``out_root``.

    A dataset prepared in N shards (:mod:`neurosam3d.data.shards`, one root each) gets one set of
    tables, the rows of its shards merged in the tables' row order: the tables of the dataset
    prepared whole, row for row, but for the root folder in the tree paths. Returns the
    combined tables written (``manifest.parquet`` etc. -> path). Raises ``ValueError`` when
    ``sources`` is not inside ``out_root``, a source folder's name is not a safe name, a table is
    provided twice, or a sharded dataset's shards are incomplete, repeated, of mixed counts or
    stale (:func:`check_shards`: the message names the roots and what to do).
    """
    out = Path(out_root).resolve()
    src = Path(sources).resolve()
    if out not in src.parents:
        raise ValueError(f"the dataset roots {src} must lie inside the combined root {out}")
    relative = PurePosixPath(src.relative_to(out).as_posix())
    folder = out / MANIFESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[tuple[Path, pa.Table]]] = {}
    providers: dict[str, dict[Path, ShardRecord | None]] = {}
    for root in source_roots(src):
        check_name(root.name, f"dataset root folder {root}")
        prefix = str(relative / root.name)
        for path in sorted((root / MANIFESTS_DIR).glob("*.parquet")):
            if path.name in COMBINED.values():
                raise ValueError(f"{path}: table name {path.name!r} is a combined table's")
            table = pq.read_table(path)
            schema = _tree_schema(table)
            if schema is not None:
                table = _prefixed(table, prefix, schema)
            parts.setdefault(path.name, []).append((path, table))
            dataset = _dataset_of(path.name)
            if dataset is not None and root not in providers.setdefault(dataset, {}):
                providers[dataset][root] = _shard_of_root(root, dataset)
    for dataset, roots in sorted(providers.items()):
        check_shards(dataset, roots)
    for name, found in sorted(parts.items()):
        if len(found) == 1:
            write_table(found[0][1], folder / name)
            continue
        schema = schema_of(found[0][1])
        if _dataset_of(name) is None or schema is None:
            where = ", ".join(str(path) for path, _ in found)
            raise ValueError(f"table name {name!r} is provided twice ({where})")
        for path, table in found:
            check_schema(table, schema, str(path))
        merged = pa.concat_tables([table.cast(schema) for _, table in found])
        write_table(sort_table(merged, schema), folder / name)
    for stale in sorted(folder.glob("*.parquet")):
        if stale.name not in parts:
            stale.unlink()
            log.info("removed %s (no dataset root provides it any more)", stale)
    sharded = sum(any(rec is not None for rec in roots.values()) for roots in providers.values())
    log.info(
        "combined %d tables (%d datasets, %d of them in shards) from %s into %s",
        len(parts),
        len(providers),
        sharded,
        src,
        out,
    )
    return rebuild_combined(out)

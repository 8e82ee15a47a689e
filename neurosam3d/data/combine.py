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

A source root is a sub-folder of ``SOURCES`` holding a ``manifests/`` folder. Tables in
``OUT/manifests/`` that no source root provides any more are removed. Same inputs, same bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neurosam3d.data.manifest import COMBINED, MANIFESTS_DIR, rebuild_combined, write_table
from neurosam3d.data.schema import MANIFEST_SCHEMA, STORE_SCHEMA
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


def combine_roots(out_root: str | Path, sources: str | Path) -> dict[str, Path]:
    """Combine every prepare root under ``sources`` (inside ``out_root``) into ``out_root``.

    Returns the combined tables written (``manifest.parquet`` etc. -> path). Raises
    ``ValueError`` when ``sources`` is not inside ``out_root`` or a source folder's name is not a
    safe name.
    """
    out = Path(out_root).resolve()
    src = Path(sources).resolve()
    if out not in src.parents:
        raise ValueError(f"the dataset roots {src} must lie inside the combined root {out}")
    relative = PurePosixPath(src.relative_to(out).as_posix())
    folder = out / MANIFESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for root in source_roots(src):
        check_name(root.name, f"dataset root folder {root}")
        prefix = str(relative / root.name)
        for path in sorted((root / MANIFESTS_DIR).glob("*.parquet")):
            if path.name in COMBINED.values() or path.name in written:
                raise ValueError(f"{path}: table name {path.name!r} is provided twice")
            table = pq.read_table(path)
            schema = _tree_schema(table)
            if schema is not None:
                table = _prefixed(table, prefix, schema)
            write_table(table, folder / path.name)
            written.add(path.name)
    for stale in sorted(folder.glob("*.parquet")):
        if stale.name not in written:
            stale.unlink()
            log.info("removed %s (no dataset root provides it any more)", stale)
    log.info("combined %d tables from %s into %s", len(written), src, out)
    return rebuild_combined(out)

"""``build_store(root)``: the training store of an existing label tree (``neurosam3d store build``).

For trees prepared before the store existed, or written by other tools following
docs/manifest.md. Reads each case's image and masks from the tree (the manifest says which),
encodes the entry exactly as ``prepare`` does (:class:`~neurosam3d.store.encode.EntryBuilder`,
so the bytes are the same), skips cases whose entry is already up to date, and writes
``manifests/<DATASET>_store.parquet`` per dataset and the combined ``store.parquet``. Cases run
in parallel worker processes; files are written atomically.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from neurosam3d.data.manifest import MANIFESTS_DIR, rebuild_combined, sorted_table, write_table
from neurosam3d.data.schema import MANIFEST_SCHEMA, STORE_SCHEMA, check_schema
from neurosam3d.io.atomic import atomic_write_bytes
from neurosam3d.io.nifti import load_nifti
from neurosam3d.io.paths import safe_join
from neurosam3d.store import layout
from neurosam3d.store.encode import EntryBuilder
from neurosam3d.transforms.intensity import DEFAULT_CT_WINDOW

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def _case_rows(manifests: Sequence[Path]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    cases: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for path in manifests:
        if not Path(path).is_file():
            raise layout.StoreError(f"{path}: manifest not found; run `neurosam3d prepare` first")
        table = pq.read_table(path)
        check_schema(table, MANIFEST_SCHEMA, str(path))
        for row in table.select(
            [
                "dataset",
                "split",
                "case_id",
                "class_name",
                "modality",
                "image_path",
                "mask_path",
                "mask_sha256",
                "bbox_min",
                "bbox_max",
            ]
        ).to_pylist():
            key = (row["dataset"], row["split"], row["case_id"])
            cases.setdefault(key, []).append(row)
    for rows in cases.values():
        rows.sort(key=lambda r: r["class_name"])
    return cases


def _up_to_date(
    root: Path,
    old: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    ct_window: tuple[float, float] = DEFAULT_CT_WINDOW,
) -> bool:
    if old is None or old["format"] != layout.STORE_FORMAT:
        return False
    if old["window_low"] is not None and [old["window_low"], old["window_high"]] != list(
        map(float, ct_window)
    ):
        return False
    image = root / rows[0]["image_path"]
    if old["image_path"] != rows[0]["image_path"] or not image.is_file():
        return False
    if image.stat().st_size != old["image_bytes"]:
        return False
    if old["class_name"] != [r["class_name"] for r in rows]:
        return False
    if old["mask_sha256"] != [r["mask_sha256"] for r in rows]:
        return False
    entry = root / old["entry"]
    sizes = sum((entry / n).stat().st_size for n in layout.ENTRY_FILES if (entry / n).is_file())
    return sizes == old["entry_bytes"]


def build_case(
    root: Path, rows: list[dict[str, Any]], ct_window: tuple[float, float] = DEFAULT_CT_WINDOW
) -> dict[str, Any]:
    """Write one case's entry from its tree files; return its store table row."""
    first = rows[0]
    image_path = safe_join(root, first["image_path"])
    if not image_path.is_file():
        raise layout.StoreError(f"{image_path}: image of case {first['case_id']} not found")
    image = np.asanyarray(load_nifti(image_path).dataobj)
    if image.ndim == 4 and image.shape[3] == 1:
        image = image[..., 0]
    builder = EntryBuilder(first["dataset"], first["split"], first["case_id"], image.shape[:3])
    for row in rows:
        mask_path = safe_join(root, row["mask_path"])
        mask = np.asanyarray(load_nifti(mask_path).dataobj)
        if mask.shape[:3] != image.shape[:3]:
            raise layout.StoreError(
                f"{mask_path}: mask grid {mask.shape} is not the image grid {image.shape} "
                f"({image_path}); re-run `neurosam3d prepare`"
            )
        box = tuple(slice(a, b) for a, b in zip(row["bbox_min"], row["bbox_max"], strict=True))
        builder.add(row["class_name"], box, mask, row["mask_sha256"])
    files, store_row = builder.encode(
        image, first["modality"], first["image_path"], image_path.stat().st_size, ct_window
    )
    for rel, data in files.items():
        atomic_write_bytes(safe_join(root, rel), data, durable=False)
    return store_row


def build_store(
    root: str | Path,
    manifests: Sequence[str | Path] = (),
    *,
    workers: int = 1,
    progress: Progress | None = None,
    ct_window: tuple[float, float] = DEFAULT_CT_WINDOW,
) -> Path:
    """Build (or bring up to date) the store of the tree at ``root``; return ``store.parquet``.

    ``manifests``: the tree's manifests (default ``root/manifest.parquet``); the store tables
    then list exactly their cases. ``ct_window``: the HU window of the CT cases' intensity
    statistics (training's ``data.ct_window``; entries computed with another are rebuilt).
    """
    ct_window = (float(ct_window[0]), float(ct_window[1]))
    root = Path(root).resolve()
    cases = _case_rows([Path(m) for m in manifests] or [root / "manifest.parquet"])
    old: dict[tuple[str, str, str], dict[str, Any]] = {}
    if (root / layout.STORE_TABLE).is_file():
        for row in pq.read_table(root / layout.STORE_TABLE).to_pylist():
            old[(row["dataset"], row["split"], row["case_id"])] = row
    todo = [k for k in sorted(cases) if not _up_to_date(root, old.get(k), cases[k], ct_window)]
    log.info("store of %s: %d cases, %d to build", root, len(cases), len(todo))
    built: dict[tuple[str, str, str], dict[str, Any]] = {}
    if workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
            for done, (key, row) in enumerate(
                zip(
                    todo,
                    pool.map(
                        build_case,
                        [root] * len(todo),
                        [cases[k] for k in todo],
                        [ct_window] * len(todo),
                    ),
                    strict=True,
                ),
                1,
            ):
                built[key] = row
                if progress:
                    progress(done, len(todo))
    else:
        for done, key in enumerate(todo, 1):
            built[key] = build_case(root, cases[key], ct_window)
            if progress:
                progress(done, len(todo))
    rows = {k: built.get(k, old.get(k)) for k in cases}
    for dataset in sorted({k[0] for k in cases}):
        mine = [r for k, r in rows.items() if k[0] == dataset]
        path = safe_join(root, MANIFESTS_DIR, f"{dataset}_store.parquet")
        write_table(sorted_table(mine, STORE_SCHEMA), path)
    rebuild_combined(root, (STORE_SCHEMA,))
    return root / layout.STORE_TABLE

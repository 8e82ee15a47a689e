"""Reading crops from the store, for manifest rows whose entries were checked first.

:func:`bind_rows` maps each selected manifest row to its case's entry and refuses (with
:class:`~neurosam3d.store.layout.StoreError`, naming the file and ``neurosam3d store build``)
a missing ``store.parquet``, a case without entry, entry files missing or of another size, and
an entry that is *stale*: built by another store format, from an image file of another size, or
from a mask whose SHA-256 is not the manifest's (the label tree changed after the store was
built). The check reads one Parquet table and stats three files per case; no volume is opened.

:class:`StoreRows` holds everything per row as numpy arrays (fork-friendly for DataLoader
workers); :func:`read_image_crop` / :func:`read_target_crop` open the entry's blosc2 arrays per
call and decompress only the blocks a crop touches, so a reader's memory is a few crops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np
import pyarrow.parquet as pq

from neurosam3d.data.schema import STORE_SCHEMA, SchemaError, check_schema
from neurosam3d.store import layout
from neurosam3d.store.layout import StoreError
from neurosam3d.training.crops import padded_crop
from neurosam3d.training.samples import SampleTable
from neurosam3d.transforms.intensity import IntensityStats, apply_intensity

_threads_set_in: int | None = None


def _single_threaded() -> None:
    """One blosc2 thread per process (DataLoader workers are the parallelism), set once per pid."""
    global _threads_set_in
    if _threads_set_in != os.getpid():
        blosc2.set_nthreads(1)
        _threads_set_in = os.getpid()


@dataclass(frozen=True)
class StoreRows:
    """Per manifest row (arrays of length ``n``, aligned with the :class:`SampleTable`).

    ``entry``: absolute entry folder; ``codes``/``code_offsets``: the row's class codes are
    ``codes[code_offsets[r]:code_offsets[r + 1]]``; ``loc_start``/``loc_stop``: the class's
    rows of the entry's ``locations.npy``; ``window`` ``n x 2`` (NaN for MR), ``mean``, ``std``,
    ``minimum``, ``bounds`` ``n x 2`` (the values at
    :data:`~neurosam3d.transforms.intensity.PERCENTILES`): the case's intensity statistics.
    """

    entry: np.ndarray
    codes: np.ndarray
    code_offsets: np.ndarray
    loc_start: np.ndarray
    loc_stop: np.ndarray
    window: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    minimum: np.ndarray
    bounds: np.ndarray

    def stats(self, row: int, scaling: str = "zscore") -> IntensityStats:
        """The row's case statistics for ``scaling`` (``"zscore"`` or ``"percentile"``)."""
        low, high = self.window[row]
        return IntensityStats(
            window=None if np.isnan(low) else (float(low), float(high)),
            mean=float(self.mean[row]),
            std=float(self.std[row]),
            minimum=float(self.minimum[row]),
            scaling=scaling,
            bounds=(float(self.bounds[row, 0]), float(self.bounds[row, 1])),
        )

    def class_codes(self, row: int) -> np.ndarray:
        return self.codes[self.code_offsets[row] : self.code_offsets[row + 1]]


def _stale(entry: Path, why: str, root: Path) -> StoreError:
    return StoreError(
        f"{entry}: store entry is stale ({why}); rebuild it with `{layout.fix_command(root)}` "
        "(or re-run `neurosam3d prepare`)"
    )


def _check_entry(root: Path, store: dict, table: SampleTable, row: int) -> None:
    entry = root / store["entry"]
    sizes = 0
    for name in layout.ENTRY_FILES:
        try:
            sizes += (entry / name).stat().st_size
        except FileNotFoundError:
            raise StoreError(
                f"{entry / name}: store file missing; rebuild the store with "
                f"`{layout.fix_command(root)}` (or re-run `neurosam3d prepare`)"
            ) from None
    if store["format"] != layout.STORE_FORMAT:
        raise _stale(
            entry, f"format {store['format']}, this version reads {layout.STORE_FORMAT}", root
        )
    if sizes != store["entry_bytes"]:
        raise _stale(
            entry,
            f"its files hold {sizes} bytes, {layout.STORE_TABLE} says {store['entry_bytes']}",
            root,
        )
    image = root / str(table.image_path[row])
    try:
        image_bytes = image.stat().st_size
    except FileNotFoundError:
        raise StoreError(
            f"{image}: image of the manifest row not found in the label tree"
        ) from None
    if store["image_path"] != str(table.image_path[row]) or image_bytes != store["image_bytes"]:
        raise _stale(
            entry,
            f"built from {store['image_path']} of {store['image_bytes']} bytes, "
            f"the tree has {table.image_path[row]} of {image_bytes} bytes",
            root,
        )
    if list(store["shape"]) != [int(x) for x in table.shape[row]]:
        raise _stale(
            entry, f"grid {store['shape']}, the manifest says {table.shape[row].tolist()}", root
        )


def bind_rows(table: SampleTable) -> StoreRows:
    """The store entries of ``table``'s rows (label-tree root ``table.root``), checked."""
    root = Path(table.root)
    path = root / layout.STORE_TABLE
    if not path.is_file():
        raise StoreError(
            f"{path}: no training store for the label tree {root}; build it with "
            f"`{layout.fix_command(root)}` (or re-run `neurosam3d prepare`)"
        )
    stored = pq.read_table(path)
    try:
        check_schema(stored, STORE_SCHEMA, str(path))
    except SchemaError as exc:
        raise StoreError(f"{exc}; rebuild it with `{layout.fix_command(root)}`") from exc
    cases = {(r["dataset"], r["split"], r["case_id"]): r for r in stored.to_pylist()}
    n = len(table)
    codes: list[int] = []
    offsets = np.zeros(n + 1, dtype=np.int64)
    fields = {k: np.zeros(n, dtype=np.float64) for k in ("mean", "std", "minimum")}
    window = np.full((n, 2), np.nan)
    bounds = np.zeros((n, 2))
    loc = np.zeros((2, n), dtype=np.int64)
    entry = np.empty(n, dtype=object)
    checked: set[tuple[str, str, str]] = set()
    for row in range(n):
        key = (str(table.dataset[row]), str(table.split[row]), str(table.case_id[row]))
        store = cases.get(key)
        if store is None:
            raise StoreError(
                f"{path}: no store entry for case {key[2]} ({key[0]}, {key[1]}); build it with "
                f"`{layout.fix_command(root)}` (or re-run `neurosam3d prepare`)"
            )
        if key not in checked:
            _check_entry(root, store, table, row)
            checked.add(key)
        name = str(table.class_name[row])
        try:
            k = store["class_name"].index(name)
        except ValueError:
            raise _stale(root / store["entry"], f"it has no class {name}", root) from None
        if store["mask_sha256"][k] != str(table.mask_sha256[row]):
            raise _stale(
                root / store["entry"],
                f"built from a {name} mask with SHA-256 {store['mask_sha256'][k][:12]}..., the "
                f"manifest's is {str(table.mask_sha256[row])[:12]}...: the label tree changed",
                root,
            )
        codes.extend(store["label_codes"][k])
        offsets[row + 1] = len(codes)
        loc[:, row] = store["location_offsets"][k : k + 2]
        entry[row] = str(root / store["entry"])
        for f in fields:
            fields[f][row] = store[f]
        if store["window_low"] is not None:
            window[row] = (store["window_low"], store["window_high"])
        bounds[row] = (store["percentile_low"], store["percentile_high"])
    return StoreRows(
        entry=entry.astype(np.str_),
        codes=np.asarray(codes, dtype=np.int64),
        code_offsets=offsets,
        loc_start=loc[0],
        loc_stop=loc[1],
        window=window,
        bounds=bounds,
        **fields,
    )


def read_image_crop(
    rows: StoreRows, row: int, start: np.ndarray, size: int, scaling: str = "zscore"
) -> np.ndarray:
    """Normalised float32 ``size``^3 image crop at voxel ``start``, by the volume-level rule
    ``scaling`` (``"zscore"`` or ``"percentile"``, with the case's stored statistics); outside
    the volume: the normalised volume minimum (the value
    :func:`~neurosam3d.transforms.intensity.normalise_intensity` gives the darkest voxel)."""
    _single_threaded()
    stats = rows.stats(row, scaling)
    image = blosc2.open(os.path.join(rows.entry[row], layout.IMAGE_FILE), mode="r")
    raw, inside = padded_crop(image, start, size, 0, image.dtype)
    out = np.full((size,) * 3, stats.background, dtype=np.float32)
    if inside is not None:
        out[inside] = apply_intensity(raw[inside], stats)
    return out


def read_target_crop(
    rows: StoreRows,
    row: int,
    start: np.ndarray,
    size: int,
    bbox: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Binary uint8 ``size``^3 crop of the row's class at voxel ``start``; only the part inside
    the class's bounding box ``bbox = (min, max)`` (manifest, max exclusive) is read."""
    _single_threaded()
    labels = blosc2.open(os.path.join(rows.entry[row], layout.LABELS_FILE), mode="r")
    codes, inside = padded_crop(labels, start, size, 0, labels.dtype, within=bbox)
    out = np.zeros((size,) * 3, dtype=np.uint8)
    if inside is not None:
        wanted = rows.class_codes(row)
        part = codes[inside]
        out[inside] = part == wanted[0] if len(wanted) == 1 else np.isin(part, wanted)
    return out


def random_centre(rows: StoreRows, row: int, rng: np.random.Generator) -> np.ndarray:
    """A target voxel of the row's class (3 int64), drawn from the entry's stored locations."""
    locations = np.load(os.path.join(rows.entry[row], layout.LOCATIONS_FILE), mmap_mode="r")
    start, stop = int(rows.loc_start[row]), int(rows.loc_stop[row])
    if stop <= start:
        raise StoreError(f"{rows.entry[row]}: no stored voxel of the row's class")
    return np.asarray(locations[int(rng.integers(start, stop))], dtype=np.int64)

"""One case's store entry from arrays in memory: image, class masks -> file bytes and table row.

:class:`EntryBuilder` takes the case's class masks one at a time (``prepare`` hands it each mask
while it encodes it; ``store build`` reads them from the tree) and then the primary image. The
bytes depend only on the arrays and names (blosc2 frames carry no timestamps; location samples
come from a generator seeded by the case and class names), so two builds give identical files.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurosam3d.store import layout
from neurosam3d.transforms.intensity import DEFAULT_CT_WINDOW, intensity_stats, percentile_stats


def _codec(name: str) -> Any:
    import blosc2

    return getattr(blosc2.Codec, name)


def blosc2_bytes(array: np.ndarray, codec: str) -> bytes:
    """A chunked blosc2 frame of ``array`` (C order, one thread: the bytes never depend on it)."""
    import blosc2

    chunks = tuple(min(c, s) for c, s in zip(layout.CHUNKS, array.shape, strict=True))
    blocks = tuple(min(b, c) for b, c in zip(layout.BLOCKS, chunks, strict=True))
    cparams = {
        "codec": _codec(codec),
        "clevel": layout.CLEVEL,
        "filters": [blosc2.Filter.SHUFFLE],
        "nthreads": 1,
    }
    data = np.ascontiguousarray(array)
    return bytes(blosc2.asarray(data, chunks=chunks, blocks=blocks, cparams=cparams).to_cframe())


def lossless_integer(image: np.ndarray) -> np.ndarray:
    """``image`` in the smallest integer type holding its values (floats and bools unchanged)."""
    if image.dtype.kind not in "iu" or image.size == 0:
        return image
    low, high = int(image.min()), int(image.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return image.astype(dtype, copy=False)
    return image


def _seed(*names: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(names).encode()).digest()[:8], "little")


@dataclass
class EntryBuilder:
    """Collects a case's masks into one label volume of class-set codes, then encodes the entry.

    ``shape``: the image grid (i, j, k). Code 0 is "no class"; every other code is one set of
    classes (in the order classes were added), so overlapping masks stay exact.
    """

    dataset: str
    split: str
    case_id: str
    shape: tuple[int, int, int]
    codes: np.ndarray = field(init=False)
    sets: list[frozenset[int]] = field(init=False)
    names: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    locations: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.codes = np.zeros(self.shape, dtype=np.uint16)
        self.sets = [frozenset()]
        self._index: dict[frozenset[int], int] = {frozenset(): 0}

    def add(self, name: str, box: tuple[slice, ...], mask: np.ndarray, mask_sha256: str) -> None:
        """Add class ``name``: its binary ``mask`` (the whole grid), foreground inside ``box``."""
        k = len(self.names)
        inside = np.asarray(mask[box]) != 0
        sub = self.codes[box]
        old = sub[inside]
        present = np.unique(old)
        if len(self.sets) + len(present) > np.iinfo(self.codes.dtype).max:
            self.codes = self.codes.astype(np.uint32)  # over 65,535 class sets: wider codes
            sub = self.codes[box]
            old = old.astype(np.uint32)
        lut = np.zeros(len(self.sets), dtype=np.uint32)
        for code in present.tolist():
            grown = self.sets[code] | {k}
            if grown not in self._index:
                self._index[grown] = len(self.sets)
                self.sets.append(grown)
            lut[code] = self._index[grown]
        sub[inside] = lut[old]
        voxels = np.flatnonzero(inside)
        if voxels.size > layout.MAX_LOCATIONS:
            rng = np.random.default_rng(_seed(self.dataset, self.case_id, name))
            voxels = np.sort(rng.choice(voxels, layout.MAX_LOCATIONS, replace=False))
        local = np.stack(np.unravel_index(voxels, inside.shape), axis=1)
        self.locations.append(local + np.array([s.start or 0 for s in box]))
        self.names.append(name)
        self.digests.append(mask_sha256)

    def encode(
        self,
        image: np.ndarray,
        modality: str,
        image_path: str,
        image_bytes: int,
        ct_window: tuple[float, float] = DEFAULT_CT_WINDOW,
    ) -> tuple[dict[str, bytes], dict[str, Any]]:
        """``({relative path: bytes}, store table row)`` of the entry; ``image`` (i, j, k) is the
        primary channel as the tree holds it, ``image_bytes`` the size of its tree file;
        ``ct_window``: the HU window of a CT case's intensity statistics (both rules: the
        z-score and the percentiles of :data:`~neurosam3d.transforms.intensity.PERCENTILES`)."""
        if tuple(image.shape) != tuple(self.shape):
            raise ValueError(f"image shape {image.shape} is not the mask grid {self.shape}")
        stats = intensity_stats(image, modality, ct_window)
        bounds = percentile_stats(image, modality, ct_window).bounds
        assert bounds is not None
        ncodes = len(self.sets)
        label_dtype = np.uint8 if ncodes <= 256 else np.uint16 if ncodes <= 65536 else np.uint32
        locations = np.concatenate(self.locations) if self.locations else np.zeros((0, 3))
        loc_dtype = np.uint16 if max(self.shape) <= 65535 else np.uint32
        buffer = io.BytesIO()
        np.save(buffer, locations.astype(loc_dtype))
        folder = layout.entry_dir(self.dataset, self.split, self.case_id)
        files = {
            f"{folder}/{layout.IMAGE_FILE}": blosc2_bytes(
                lossless_integer(image), layout.IMAGE_CODEC
            ),
            f"{folder}/{layout.LABELS_FILE}": blosc2_bytes(
                self.codes.astype(label_dtype), layout.LABELS_CODEC
            ),
            f"{folder}/{layout.LOCATIONS_FILE}": buffer.getvalue(),
        }
        offsets = np.cumsum([0, *(len(x) for x in self.locations)]).tolist()
        window = stats.window or (None, None)
        row = {
            "dataset": self.dataset,
            "split": self.split,
            "case_id": self.case_id,
            "modality": modality,
            "format": layout.STORE_FORMAT,
            "entry": folder,
            "entry_bytes": sum(len(data) for data in files.values()),
            "image_path": image_path,
            "image_bytes": int(image_bytes),
            "shape": [int(s) for s in self.shape],
            "class_name": list(self.names),
            "mask_sha256": list(self.digests),
            "label_codes": [
                [code for code, s in enumerate(self.sets) if k in s] for k in range(len(self.names))
            ],
            "location_offsets": [int(x) for x in offsets],
            "window_low": window[0],
            "window_high": window[1],
            "mean": stats.mean,
            "std": stats.std,
            "minimum": stats.minimum,
            "percentile_low": bounds[0],
            "percentile_high": bounds[1],
        }
        return files, row

"""Crops of the model input size around a target, from a decoded region of the volume.

A *region* is the part of the volume any crop of a target can touch: the target's bounding box
grown by half a crop on each side, clipped to the volume. It is decoded once per (image, mask)
and normalised with whole-volume statistics; crops are then cut from it, padding with the
volume's background value (its normalised minimum) where they leave the volume. With a cache
directory the region is stored as uncompressed ``.npy`` files and memory-mapped afterwards, so a
case is decompressed once per run instead of once per sample.

Coordinates are voxel indices along the NIfTI array axes (i, j, k).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurosam3d.io.atomic import atomic_path, atomic_write_text
from neurosam3d.io.nifti import load_nifti
from neurosam3d.training.intensity import normalise_intensity

logger = logging.getLogger(__name__)

_CACHE_VERSION = "region/1"


@dataclass(frozen=True)
class Region:
    """``image`` float32 and ``mask`` uint8 arrays of equal shape starting at voxel ``origin``
    (3 ints) of the volume; ``background`` is the value for voxels outside the volume."""

    image: np.ndarray
    mask: np.ndarray
    origin: tuple[int, int, int]
    background: float


def _file_stamp(path: Path) -> list[int]:
    """``[size, mtime_ns]`` of ``path``: changes whenever the file is rewritten."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


@dataclass(frozen=True)
class RegionSpec:
    """What identifies one region: the files, the target's bbox and the preprocessing."""

    image_path: Path
    mask_path: Path
    mask_sha256: str
    modality: str
    bbox_min: tuple[int, int, int]
    bbox_max: tuple[int, int, int]
    crop_size: int
    ct_window: tuple[float, float]

    def key(self) -> str:
        """Cache key: SHA-256 of every field, the cache layout version and the size and
        modification time (ns) of the image and mask files, so rewriting either file (e.g. a
        re-run ``neurosam3d prepare`` that keeps the same mask) invalidates the cached region."""
        files = [_file_stamp(self.image_path), _file_stamp(self.mask_path)]
        text = json.dumps([_CACHE_VERSION, *map(str, vars(self).values()), *files])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def bounds(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Region start (inclusive) and stop (exclusive) in a volume of ``shape``."""
        half = self.crop_size // 2 + 1
        lo = np.maximum(np.asarray(self.bbox_min) - half, 0)
        hi = np.minimum(np.asarray(self.bbox_max) + half, np.asarray(shape[:3]))
        return lo, hi


def decode_region(spec: RegionSpec) -> Region:
    """Load image and mask, normalise the image on the whole volume, cut the region."""
    image = np.asanyarray(load_nifti(spec.image_path).dataobj)
    mask = np.asanyarray(load_nifti(spec.mask_path).dataobj)
    if image.shape[:3] != mask.shape[:3]:
        raise ValueError(
            f"{spec.mask_path}: mask shape {mask.shape} differs from image shape {image.shape} "
            f"({spec.image_path}); re-run `neurosam3d prepare`"
        )
    if image.ndim == 4:  # one channel per file by contract; tolerate a trailing singleton axis
        image = image[..., 0]
    normalised = normalise_intensity(image, spec.modality, spec.ct_window)
    lo, hi = spec.bounds(image.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return Region(
        image=np.ascontiguousarray(normalised[box]),
        mask=np.ascontiguousarray(mask[box] > 0).astype(np.uint8),
        origin=tuple(int(x) for x in lo),  # type: ignore[arg-type]
        background=float(normalised.min()),
    )


def load_region(spec: RegionSpec, cache_dir: Path | None) -> Region:
    """The region of ``spec``, from ``cache_dir`` when present there (written on a miss)."""
    if cache_dir is None:
        return decode_region(spec)
    folder = cache_dir / spec.key()
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Region(
            image=np.load(folder / "image.npy", mmap_mode="r"),
            mask=np.load(folder / "mask.npy", mmap_mode="r"),
            origin=tuple(meta["origin"]),  # type: ignore[arg-type]
            background=float(meta["background"]),
        )
    region = decode_region(spec)
    for name, array in (("image.npy", region.image), ("mask.npy", region.mask)):
        with atomic_path(folder / name) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array)
    meta = {"origin": list(region.origin), "background": region.background}
    atomic_write_text(meta_path, json.dumps(meta))  # written last: marks the entry complete
    logger.debug("cached region %s of %s", spec.key(), spec.mask_path)
    return region


def crop_start(centre: np.ndarray, crop_size: int) -> np.ndarray:
    """First voxel of a ``crop_size``^3 crop centred on voxel ``centre`` (3 ints, volume coords)."""
    return np.asarray(centre, dtype=np.int64) - crop_size // 2


def bbox_centre(bbox_min: np.ndarray, bbox_max: np.ndarray) -> np.ndarray:
    """Centre voxel of a [min, max) bounding box: the deterministic validation crop centre."""
    return (np.asarray(bbox_min) + np.asarray(bbox_max) - 1) // 2


def random_foreground_voxel(region: Region, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn target voxel of ``region`` in volume coordinates (3 int64)."""
    voxels = np.flatnonzero(region.mask)
    if voxels.size == 0:
        raise ValueError("the target mask is empty inside its bounding-box region")
    local = np.unravel_index(int(voxels[rng.integers(voxels.size)]), region.mask.shape)
    return np.asarray(local, dtype=np.int64) + np.asarray(region.origin)


def cut(region: Region, start: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``crop_size``^3 image (float32) and mask (uint8) crops starting at volume voxel ``start``.

    Voxels outside the region (hence outside the volume) get the background / 0.
    """
    image = np.full((crop_size,) * 3, region.background, dtype=np.float32)
    mask = np.zeros((crop_size,) * 3, dtype=np.uint8)
    local = np.asarray(start) - np.asarray(region.origin)
    src, dst = [], []
    for axis in range(3):
        a = max(int(local[axis]), 0)
        b = min(int(local[axis]) + crop_size, region.image.shape[axis])
        if b <= a:
            return image, mask
        src.append(slice(a, b))
        dst.append(slice(a - int(local[axis]), b - int(local[axis])))
    image[tuple(dst)] = region.image[tuple(src)]
    mask[tuple(dst)] = region.mask[tuple(src)]
    return image, mask

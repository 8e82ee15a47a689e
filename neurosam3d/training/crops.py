"""Crop geometry: where a crop of the model input size starts, and cutting it from any array.

Coordinates are voxel indices along the NIfTI array axes (i, j, k). A crop may leave the volume;
:func:`padded_crop` reads only the part inside it (from a numpy array, a memory map or a chunked
blosc2 array alike: only that box is sliced) and fills the rest with a given value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurosam3d.transforms.geometry import centred_start


def crop_start(centre: np.ndarray, crop_size: int) -> np.ndarray:
    """First voxel of a ``crop_size``^3 crop centred on voxel ``centre`` (3 ints, volume coords)."""
    return np.asarray(centre, dtype=np.int64) - crop_size // 2


def bbox_centre(bbox_min: np.ndarray, bbox_max: np.ndarray) -> np.ndarray:
    """Centre voxel of a [min, max) bounding box."""
    return (np.asarray(bbox_min) + np.asarray(bbox_max) - 1) // 2


def bbox_crop_start(bbox_min: np.ndarray, bbox_max: np.ndarray, crop_size: int) -> np.ndarray:
    """First voxel of the validation crop of a [min, max) box: the window evaluation and
    ``predict`` lay over it (:func:`neurosam3d.transforms.geometry.centred_start`), so a
    validation crop is the window evaluation encodes for the same target."""
    return centred_start(bbox_min, bbox_max, crop_size)


def overlap(
    start: np.ndarray, size: int, lo: np.ndarray, hi: np.ndarray
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Where the crop ``[start, start + size)^3`` meets the box ``[lo, hi)``.

    Returns ``(source, destination)``: slices of the box in volume coordinates and the same
    voxels in crop coordinates, or None when they do not meet.
    """
    src, dst = [], []
    for axis in range(3):
        a = max(int(start[axis]), int(lo[axis]))
        b = min(int(start[axis]) + size, int(hi[axis]))
        if b <= a:
            return None
        src.append(slice(a, b))
        dst.append(slice(a - int(start[axis]), b - int(start[axis])))
    return tuple(src), tuple(dst)


def padded_crop(
    array: Any,
    start: np.ndarray,
    size: int,
    fill: float,
    dtype: Any,
    within: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, tuple[slice, ...] | None]:
    """``size``^3 crop of ``array`` (3D, sliceable) starting at voxel ``start``.

    Voxels outside the volume, or outside the box ``within = (lo, hi)`` when given, are
    ``fill``. Returns the crop (``dtype``) and the crop-coordinate slices that were read (None:
    nothing was read).
    """
    out = np.full((size,) * 3, fill, dtype=dtype)
    lo, hi = within if within is not None else (np.zeros(3, np.int64), np.asarray(array.shape))
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(array.shape[:3]))
    where = overlap(start, size, lo, hi)
    if where is None:
        return out, None
    src, dst = where
    out[dst] = array[src]
    return out, dst

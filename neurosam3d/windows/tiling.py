"""Sliding windows over the working grid: plan, extend and stitch.

A window is a :class:`~neurosam3d.transforms.geometry.Box` of the model's input size (``size``
voxels per axis, working grid). A target that fits in one window gets one window centred on its
bounding box (SAM-Med3D's crop); a larger one gets a regular tiling with ``overlap`` that covers
it. The bounding box is grown by ``margin`` voxels first, so a target that would touch a window
border gets the next window as well. During inference without a reference,
:func:`border_neighbours` adds the window beyond every face that a predicted mask touches.
Predictions of overlapping windows are averaged (:class:`Stitcher`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from neurosam3d.transforms.geometry import Box, Vec3, centred_start

#: Default fraction of a window shared with its neighbour along an axis.
DEFAULT_OVERLAP = 0.25


def _axis_starts(lo: float, hi: float, size: int, overlap: float) -> list[int]:
    """Window starts along one axis that cover ``[lo, hi)`` (voxels) with windows of ``size``."""
    extent = hi - lo
    if extent <= size:
        return [int(centred_start(np.array(lo), np.array(hi), size))]
    stride = max(1, math.floor(size * (1.0 - overlap)))
    count = math.ceil((extent - size) / stride) + 1
    first, last = math.floor(lo), math.ceil(hi) - size
    return sorted({round(first + (last - first) * n / (count - 1)) for n in range(count)})


def plan_windows(
    lo: np.ndarray,
    hi: np.ndarray,
    size: int,
    *,
    overlap: float = DEFAULT_OVERLAP,
    margin: int = 1,
) -> list[Box]:
    """Windows of ``size``^3 working voxels covering the box ``[lo, hi)`` grown by ``margin``.

    ``lo`` (inclusive) and ``hi`` (exclusive) are working voxel indices, shape (3,). Returns the
    windows in C order of their starts (deterministic).
    """
    starts = [
        _axis_starts(float(a) - margin, float(b) + margin, size, overlap)
        for a, b in zip(lo, hi, strict=True)
    ]
    return [
        Box((int(x), int(y), int(z)), (size, size, size))
        for x in starts[0]
        for y in starts[1]
        for z in starts[2]
    ]


def union_box(boxes: Iterable[Box], shape: Vec3) -> Box:
    """The smallest box holding every box, clipped to a grid of ``shape`` voxels."""
    boxes = list(boxes)
    start = [max(0, min(b.start[a] for b in boxes)) for a in range(3)]
    stop = [min(shape[a], max(b.stop[a] for b in boxes)) for a in range(3)]
    return Box(tuple(start), tuple(e - s for s, e in zip(start, stop, strict=True)))  # type: ignore[arg-type]


def border_neighbours(
    mask: np.ndarray,
    box: Box,
    shape: Vec3,
    overlap: float = DEFAULT_OVERLAP,
    known: Iterable[Box] = (),
) -> list[Box]:
    """Windows beyond each face of ``box`` that the window's ``mask`` (``box.size`` bool) touches.

    A face counts only where the working grid (``shape``) continues past it; the neighbour is
    ``box`` shifted by one stride (``size * (1 - overlap)``) across that face. A face whose
    touched voxels, one layer beyond it, already lie inside one of the ``known`` windows (e.g.
    the next window of a tiling) needs no new window and is skipped.
    """
    known = list(known)
    found = []
    for axis in range(3):
        stride = max(1, math.floor(box.size[axis] * (1.0 - overlap)))
        for direction, index in ((-1, 0), (1, box.size[axis] - 1)):
            beyond_grid = box.start[axis] <= 0 if direction < 0 else box.stop[axis] >= shape[axis]
            face = np.take(mask, index, axis=axis)
            if beyond_grid or not face.any():
                continue
            if known and _layer_is_known(face, box, axis, direction, known):
                continue
            start = list(box.start)
            start[axis] += direction * stride
            found.append(Box(tuple(start), box.size))  # type: ignore[arg-type]
    return found


def _layer_is_known(
    face: np.ndarray, box: Box, axis: int, direction: int, known: list[Box]
) -> bool:
    """Whether the touched voxels of ``face``, one voxel beyond it, lie in one ``known`` window."""
    others = [a for a in range(3) if a != axis]
    touched = np.argwhere(face)
    lo = np.zeros(3)
    hi = np.zeros(3)
    layer = box.start[axis] - 1 if direction < 0 else box.stop[axis]
    lo[axis] = hi[axis] = layer
    for column, a in enumerate(others):
        lo[a] = box.start[a] + touched[:, column].min()
        hi[a] = box.start[a] + touched[:, column].max()
    return any(w.contains(lo) and w.contains(hi) for w in known)


#: Working voxels per slab when stitching (a float32 slab of this many voxels is the only
#: float32 temporary of :meth:`Stitcher.probabilities`).
_STITCH_SLAB_VOXELS = 1 << 21

#: dtype of stored and stitched probabilities: half the bytes of float32, and exact for the
#: values that decide the mask away from the threshold (float16 resolves 0.5 +- 0.0005).
PROBABILITY_DTYPE = np.float16


class Stitcher:
    """Average of window predictions on a region of the working grid.

    ``region``: the working-grid box the result covers. :meth:`set` stores a window's
    probabilities (``window.size``, in [0, 1]; kept as :data:`PROBABILITY_DTYPE`, float16),
    replacing that window's previous ones; :meth:`probabilities` averages over the windows that
    cover each voxel (0 where none does), slab by slab, so no region-sized float32 array is made.
    """

    def __init__(self, region: Box) -> None:
        self.region = region
        self._windows: dict[Box, np.ndarray] = {}

    def set(self, window: Box, probs: np.ndarray) -> None:
        """Store ``probs`` (``window.size``) as ``window``'s current prediction."""
        if probs.shape != window.size:
            raise ValueError(
                f"probabilities of shape {probs.shape} for a window of size {window.size}"
            )
        self._windows[window] = np.asarray(probs, dtype=PROBABILITY_DTYPE)

    @property
    def windows(self) -> dict[Box, np.ndarray]:
        """The stored predictions by window (read-only use)."""
        return dict(self._windows)

    def probabilities(self) -> np.ndarray:
        """Stitched probabilities, ``region.size`` float16 (averaged in float32 per slab)."""
        out = np.zeros(self.region.size, dtype=PROBABILITY_DTYPE)
        plane = max(1, self.region.size[1] * self.region.size[2])
        step = max(1, _STITCH_SLAB_VOXELS // plane)
        windows = sorted(self._windows, key=lambda b: b.start)
        for first in range(0, self.region.size[0], step):
            last = min(first + step, self.region.size[0])
            slab = Box(
                (self.region.start[0] + first, *self.region.start[1:]),
                (last - first, *self.region.size[1:]),
            )
            total = np.zeros(slab.size, dtype=np.float32)
            # one byte per voxel (at most 255 windows overlap a voxel)
            count = np.zeros(slab.size, dtype=np.uint8)
            for window in windows:
                dst, src = overlap_slices(window, slab)
                if dst is not None:
                    total[dst] += self._windows[window][src]
                    count[dst] += 1
            np.divide(total, count, out=total, where=count > 1)
            out[first:last] = total
        return out


def overlap_slices(window: Box, region: Box) -> tuple[tuple[slice, ...] | None, tuple[slice, ...]]:
    """Slices of the overlap of two boxes: (into ``region``, into ``window``), or ``(None, ())``."""
    dst, src = [], []
    for a in range(3):
        lo = max(window.start[a], region.start[a])
        hi = min(window.stop[a], region.stop[a])
        if hi <= lo:
            return None, ()
        dst.append(slice(lo - region.start[a], hi - region.start[a]))
        src.append(slice(lo - window.start[a], hi - window.start[a]))
    return tuple(dst), tuple(src)

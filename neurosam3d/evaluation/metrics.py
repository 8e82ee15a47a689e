"""Overlap and surface metrics of one binary prediction against one binary reference.

Both masks are boolean arrays of the same shape ``(I, J, K)`` on the same voxel grid, whose voxel
edge lengths in mm are ``spacing``. Surfaces are the mask voxels with at least one 6-neighbour
outside the mask (the array border counts as outside); surface distances are Euclidean, in mm.

Empty-mask policy (applied to every metric and every aggregate in this package):

* reference empty and prediction empty: Dice and NSD are **NaN** (there is nothing to score);
  aggregates use ``nanmean``, so such a pair does not count;
* reference empty, prediction not empty: Dice 0 and NSD 0 (every predicted voxel is wrong);
* reference not empty, prediction empty: Dice 0 and NSD 0.

The evaluation protocol only scores manifest rows, whose reference masks are never empty; the
policy matters for user-supplied masks and is tested on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Default NSD tolerance in mm.
DEFAULT_NSD_TOLERANCE_MM = 2.0
#: Spacings read from affines carry float noise (0.5000000005 mm); a distance of exactly the
#: tolerance must count as within it, so comparisons allow this much slack (mm).
_DISTANCE_SLACK_MM = 1e-6


@dataclass(frozen=True)
class MaskScores:
    """Scores of one prediction against one reference (voxel counts are int, Dice/NSD in [0, 1])."""

    dice: float
    nsd: float
    pred_voxels: int
    ref_voxels: int
    true_positives: int


def _foreground_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` as slices, grown by one voxel (clipped to the array), or None."""
    nonzero = [
        np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    if any(len(n) == 0 for n in nonzero):
        return None
    return tuple(
        slice(max(int(n[0]) - 1, 0), min(int(n[-1]) + 2, size))
        for n, size in zip(nonzero, mask.shape, strict=True)
    )


def _pad_outside(mask: np.ndarray) -> np.ndarray:
    """Pad by one background voxel so that erosion treats the array border as outside."""
    return np.pad(mask, 1, mode="constant", constant_values=False)


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface voxels of ``mask`` (6-connected erosion, the array border counts as outside)."""
    padded = _pad_outside(mask)
    return (padded & ~ndimage.binary_erosion(padded))[1:-1, 1:-1, 1:-1]


def _dice_from_counts(pred_voxels: int, ref_voxels: int, true_positives: int) -> float:
    total = pred_voxels + ref_voxels
    return math.nan if total == 0 else 2.0 * true_positives / total


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient of two boolean masks; NaN when both are empty (module policy)."""
    return _dice_from_counts(int(pred.sum()), int(ref.sum()), int(np.logical_and(pred, ref).sum()))


def tolerance_ball(spacing: tuple[float, float, float], tolerance_mm: float) -> np.ndarray:
    """Boolean structuring element of the voxel offsets no longer than ``tolerance_mm`` (mm)."""
    radius = [int(np.floor((tolerance_mm + _DISTANCE_SLACK_MM) / s)) for s in spacing]
    offsets = np.meshgrid(
        *[np.arange(-r, r + 1) * s for r, s in zip(radius, spacing, strict=True)], indexing="ij"
    )
    return sum(o**2 for o in offsets) <= (tolerance_mm + _DISTANCE_SLACK_MM) ** 2


def normalised_surface_dice(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, float, float],
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> float:
    """Normalised surface Dice (Nikolov et al. 2021) at ``tolerance_mm``, voxel-border surfaces.

    The fraction of both surfaces (counted in surface voxels) that lies within ``tolerance_mm`` of
    the other surface; equals MONAI's ``compute_surface_dice(use_subvoxels=False)``. NaN when both
    masks are empty, 0 when exactly one is (module policy).
    """
    union = np.logical_or(pred, ref)
    box = _foreground_box(union)
    if box is None:
        return math.nan
    if not pred.any() or not ref.any():
        return 0.0
    # The box holds every mask voxel plus a background rim (or the array border), so surfaces
    # computed inside it are exactly those of the whole arrays.
    surf_pred, surf_ref = surface(pred[box]), surface(ref[box])
    # A surface voxel is within the tolerance of the other surface iff it lies in that surface
    # dilated by every voxel offset no longer than the tolerance (in mm): exact, no distances.
    ball = tolerance_ball(spacing, tolerance_mm)
    near_ref = ndimage.binary_dilation(surf_ref, structure=ball)
    near_pred = ndimage.binary_dilation(surf_pred, structure=ball)
    close = int((surf_pred & near_ref).sum()) + int((surf_ref & near_pred).sum())
    return close / int(surf_pred.sum() + surf_ref.sum())


def score_masks(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, float, float],
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> MaskScores:
    """Dice, NSD and voxel counts of boolean ``pred`` against boolean ``ref`` (same shape)."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    pred, ref = pred.astype(bool, copy=False), ref.astype(bool, copy=False)
    counts = int(pred.sum()), int(ref.sum()), int(np.logical_and(pred, ref).sum())
    return MaskScores(
        dice=_dice_from_counts(*counts),
        nsd=normalised_surface_dice(pred, ref, spacing, tolerance_mm),
        pred_voxels=counts[0],
        ref_voxels=counts[1],
        true_positives=counts[2],
    )


class ReferenceScorer:
    """:func:`score_masks` against one fixed reference, for many predictions (one per click).

    The reference's voxel count, surface and tolerance neighbourhood are computed once, inside
    its bounding box grown by the tolerance (nothing of the size of the volume is kept); each
    prediction then costs its own surface and neighbourhood inside its own bounding box.
    :meth:`score_box` scores a prediction given only on a block of the grid (zero elsewhere),
    so a click costs the size of the block, not of the volume. Scores are identical to
    :func:`score_masks`.
    """

    def __init__(
        self,
        ref: np.ndarray,
        spacing: tuple[float, float, float],
        tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    ) -> None:
        ref = ref.astype(bool, copy=False)
        self.shape = ref.shape
        self.spacing = spacing
        self.tolerance_mm = tolerance_mm
        self.ref_voxels = int(ref.sum())
        self._ball = tolerance_ball(spacing, tolerance_mm)
        ref_box = _foreground_box(ref)
        self._box = None
        self.surface_voxels = 0
        if ref_box is not None:
            self._box = _grow(ref_box, self._ball.shape, ref.shape)
            self._ref = np.ascontiguousarray(ref[self._box])
            self._surf_ref = surface(self._ref)  # the grown box keeps a background rim or border
            self._near_ref = ndimage.binary_dilation(self._surf_ref, structure=self._ball)
            self.surface_voxels = int(self._surf_ref.sum())

    def _take(self, stored: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
        """``stored`` (an array on the reference's box) read on the grid block ``box`` (0 outside)."""
        out = np.zeros([s.stop - s.start for s in box], dtype=stored.dtype)
        if self._box is None:
            return out
        dst, src = [], []
        for b, r in zip(box, self._box, strict=True):
            lo, hi = max(b.start, r.start), min(b.stop, r.stop)
            if hi <= lo:
                return out
            dst.append(slice(lo - b.start, hi - b.start))
            src.append(slice(lo - r.start, hi - r.start))
        out[tuple(dst)] = stored[tuple(src)]
        return out

    def score(self, pred: np.ndarray) -> MaskScores:
        """Scores of boolean ``pred`` (the reference's shape)."""
        if pred.shape != self.shape:
            raise ValueError(
                f"prediction shape {pred.shape} differs from reference shape {self.shape}"
            )
        return self.score_box(pred, tuple(slice(0, n) for n in self.shape))

    def score_box(self, pred: np.ndarray, box: tuple[slice, ...]) -> MaskScores:
        """Scores of a prediction that is boolean ``pred`` on the grid block ``box`` and 0 elsewhere."""
        box = tuple(slice(*s.indices(n)[:2]) for s, n in zip(box, self.shape, strict=True))
        if pred.shape != tuple(s.stop - s.start for s in box):
            raise ValueError(f"prediction block of shape {pred.shape} does not fit the box {box}")
        pred = pred.astype(bool, copy=False)
        pred_voxels = int(pred.sum())
        true_positives = (
            int(np.logical_and(pred, self._take(self._ref, box)).sum())
            if self._box is not None
            else 0
        )
        counts = pred_voxels, self.ref_voxels, true_positives
        return MaskScores(_dice_from_counts(*counts), self._nsd(pred, box, pred_voxels), *counts)

    def _nsd(self, pred: np.ndarray, box: tuple[slice, ...], pred_voxels: int) -> float:
        if pred_voxels == 0 or self.ref_voxels == 0:
            return math.nan if pred_voxels == self.ref_voxels else 0.0
        own = _foreground_box(pred)  # grown by one voxel inside the block
        assert own is not None
        # Outside the block the prediction is 0, so its surface computed on the block padded with
        # background is exactly that of the whole prediction.
        surf_pred = surface(pred[own])
        surf_box = tuple(
            slice(b.start + o.start, b.start + o.stop) for b, o in zip(box, own, strict=True)
        )
        close_pred = int((surf_pred & self._take(self._near_ref, surf_box)).sum())
        # The predicted surface's neighbourhood reaches the tolerance beyond its box.
        near_box = _grow(surf_box, self._ball.shape, self.shape)
        placed = np.zeros([s.stop - s.start for s in near_box], dtype=bool)
        placed[
            tuple(
                slice(s.start - n.start, s.stop - n.start)
                for s, n in zip(surf_box, near_box, strict=True)
            )
        ] = surf_pred
        near_pred = ndimage.binary_dilation(placed, structure=self._ball)
        close_ref = int((self._take(self._surf_ref, near_box) & near_pred).sum())
        return (close_pred + close_ref) / int(surf_pred.sum() + self.surface_voxels)


def _grow(
    box: tuple[slice, ...], structure: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """``box`` grown by half a structuring element per axis, clipped to ``shape``."""
    return tuple(
        slice(max(b.start - k // 2, 0), min(b.stop + k // 2, n))
        for b, k, n in zip(box, structure, shape, strict=True)
    )

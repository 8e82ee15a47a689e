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

    The reference's voxel count, surface and tolerance neighbourhood are computed once; each
    prediction then costs its own surface and neighbourhood inside the union's bounding box.
    Scores are identical to :func:`score_masks`.
    """

    def __init__(
        self,
        ref: np.ndarray,
        spacing: tuple[float, float, float],
        tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    ) -> None:
        self.ref = ref.astype(bool, copy=False)
        self.spacing = spacing
        self.tolerance_mm = tolerance_mm
        self.ref_voxels = int(self.ref.sum())
        self._ball = tolerance_ball(spacing, tolerance_mm)
        self._ref_box = _foreground_box(self.ref)
        self._surf_ref = np.zeros_like(self.ref)
        self._near_ref = np.zeros_like(self.ref)
        if self._ref_box is not None:
            self._surf_ref[self._ref_box] = surface(self.ref[self._ref_box])
            grown = _grow(self._ref_box, self._ball.shape, self.ref.shape)
            self._near_ref[grown] = ndimage.binary_dilation(
                self._surf_ref[grown], structure=self._ball
            )

    def score(self, pred: np.ndarray) -> MaskScores:
        """Scores of boolean ``pred`` (the reference's shape)."""
        if pred.shape != self.ref.shape:
            raise ValueError(
                f"prediction shape {pred.shape} differs from reference shape {self.ref.shape}"
            )
        pred = pred.astype(bool, copy=False)
        counts = int(pred.sum()), self.ref_voxels, int(np.logical_and(pred, self.ref).sum())
        return MaskScores(_dice_from_counts(*counts), self._nsd(pred, counts[0]), *counts)

    def _nsd(self, pred: np.ndarray, pred_voxels: int) -> float:
        if pred_voxels == 0 or self.ref_voxels == 0:
            return math.nan if pred_voxels == self.ref_voxels else 0.0
        box = _foreground_box(np.logical_or(pred, self.ref))
        surf_pred = surface(pred[box])
        surf_ref = self._surf_ref[box]
        near_pred = ndimage.binary_dilation(surf_pred, structure=self._ball)
        close = int((surf_pred & self._near_ref[box]).sum()) + int((surf_ref & near_pred).sum())
        return close / int(surf_pred.sum() + surf_ref.sum())


def _grow(
    box: tuple[slice, ...], structure: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """``box`` grown by half a structuring element per axis, clipped to ``shape``."""
    return tuple(
        slice(max(b.start - k // 2, 0), min(b.stop + k // 2, n))
        for b, k, n in zip(box, structure, shape, strict=True)
    )

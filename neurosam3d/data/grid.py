"""Voxel grids: matching, nearest-neighbour placement by world coordinates, target spacing.

A grid is a shape ``(I, J, K)`` in voxels plus a 4x4 affine mapping voxel indices (i, j, k) to
world coordinates in mm. Resampling maps each *output* voxel centre to world space and back into
the source's voxel space (``inv(A_src) @ A_dst``), so orientation and origin are respected.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage


@dataclass
class Grid:
    """The output grid of a case: shape (voxels), affine (voxel -> mm) and a header source."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    like: nib.Nifti1Image

    @functools.cached_property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (i, j, k)."""
        return tuple(float(x) for x in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))


#: Affines equal within this tolerance (mm, and direction cosines x spacing) are the same grid.
AFFINE_ATOL = 1e-3


def same_grid(
    shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray
) -> bool:
    """Same shape and (within ``AFFINE_ATOL``) the same voxel -> world mapping."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=AFFINE_ATOL)


#: Largest angle (degrees) between a label voxel axis and the nearest image voxel axis for which
#: nearest-neighbour placement is still a pure reindexing (no rotation, no shear).
AXIS_ALIGNED_DEG = 0.1


def misalignment_deg(src_affine: np.ndarray, dst_affine: np.ndarray) -> float:
    """The largest angle in degrees between a destination voxel axis, seen in source voxel
    space, and its nearest source axis: 0 when one grid is a flip, permutation, scaling or
    shift of the other; more when it is rotated or sheared against it."""
    linear = _voxel_map(src_affine, dst_affine)[:3, :3]
    norms = np.linalg.norm(linear, axis=0)
    if np.any(norms == 0):
        return 90.0
    cosines = np.abs(linear).max(axis=0) / norms
    return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())


def _voxel_map(src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """4x4 matrix taking destination voxel indices to source voxel indices."""
    return np.linalg.inv(src_affine) @ dst_affine


def overlaps(
    src_shape: tuple[int, ...],
    src_affine: np.ndarray,
    dst_shape: tuple[int, ...],
    dst_affine: np.ndarray,
) -> bool:
    """Whether the destination grid's box intersects the source volume (voxel-centre extents)."""
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in dst_shape[:3]])), float)
    mapped = (_voxel_map(src_affine, dst_affine) @ np.c_[corners, np.ones(8)].T)[:3]
    low, high = mapped.min(axis=1), mapped.max(axis=1)
    return bool(np.all(high >= -0.5) and np.all(low <= np.array(src_shape[:3]) - 0.5))


def resample_nearest(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    dst_affine: np.ndarray,
) -> np.ndarray:
    """Nearest-neighbour resampling of a 3D (label) array onto another grid; 0 outside.

    ``data`` (I, J, K) any integer dtype -> (dst_shape) same dtype, Fortran order.
    """
    matrix = _voxel_map(src_affine, dst_affine)
    out = np.zeros(dst_shape, dtype=data.dtype, order="F")
    # "grid-constant": a point a rounding error outside the first or last voxel centre still
    # takes that voxel (plain "constant" would zero a whole edge slice); beyond it, 0.
    ndimage.affine_transform(
        data, matrix[:3, :3], offset=matrix[:3, 3], output=out, order=0, mode="grid-constant"
    )
    return out


def spacing_grid(
    shape: tuple[int, int, int], affine: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[tuple[int, int, int], np.ndarray]:
    """The grid covering the same field of view at ``spacing_mm`` (same axes and first voxel).

    Returns (shape, affine); each axis keeps its direction, voxel (0, 0, 0) keeps its centre.
    """
    current = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    factor = np.asarray(spacing_mm, float) / current
    new_shape = tuple(max(1, round(n / f)) for n, f in zip(shape[:3], factor, strict=True))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * factor
    return new_shape, new_affine


def resample_linear(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    dst_affine: np.ndarray,
) -> np.ndarray:
    """Trilinear resampling of an image; the result keeps ``data``'s dtype (ints rounded, clipped)."""
    matrix = _voxel_map(src_affine, dst_affine)
    out = ndimage.affine_transform(
        data.astype(np.float32),
        matrix[:3, :3],
        offset=matrix[:3, 3],
        output_shape=dst_shape,
        order=1,
        mode="nearest",
    )
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return np.asfortranarray(out.astype(data.dtype))

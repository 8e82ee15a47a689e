"""Voxel grids of prepared cases: matching and overlap checks.

A grid is a shape ``(I, J, K)`` in voxels plus a 4x4 affine mapping voxel indices (i, j, k) to
world coordinates in mm. Resampling onto another grid, and which grid a target spacing or
orientation gives, live in :mod:`neurosam3d.transforms` (one convention for the package).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from neurosam3d.transforms.resample import voxel_map


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
    linear = voxel_map(src_affine, dst_affine)[:3, :3]
    norms = np.linalg.norm(linear, axis=0)
    if np.any(norms == 0):
        return 90.0
    cosines = np.abs(linear).max(axis=0) / norms
    return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())


def overlaps(
    src_shape: tuple[int, ...],
    src_affine: np.ndarray,
    dst_shape: tuple[int, ...],
    dst_affine: np.ndarray,
) -> bool:
    """Whether the destination grid's box intersects the source volume (voxel-centre extents)."""
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in dst_shape[:3]])), float)
    mapped = (voxel_map(src_affine, dst_affine) @ np.c_[corners, np.ones(8)].T)[:3]
    low, high = mapped.min(axis=1), mapped.max(axis=1)
    return bool(np.all(high >= -0.5) and np.all(low <= np.array(src_shape[:3]) - 0.5))

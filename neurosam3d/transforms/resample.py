"""Whole-array resampling onto another grid, by world coordinates (``prepare``'s labels and images).

Both functions map each *output* voxel centre to world space and back into the source's voxel
space (``inv(A_src) @ A_dst``), so orientation and origin are respected; which output grid to
ask for is :func:`neurosam3d.transforms.geometry.plan_grid`'s business (the package's one
resampling convention). Interpolation is scipy's ``ndimage.affine_transform`` (exact at voxel
centres that coincide, no smoothing), the same interpolation the working-grid windows use.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def voxel_map(src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """4x4 matrix taking destination voxel indices to source voxel indices."""
    return np.linalg.inv(src_affine) @ dst_affine


def resample_nearest(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    dst_affine: np.ndarray,
) -> np.ndarray:
    """Nearest-neighbour resampling of a 3D (label) array onto another grid; 0 outside.

    ``data`` (I, J, K) any integer dtype -> (dst_shape) same dtype, Fortran order.
    """
    matrix = voxel_map(src_affine, dst_affine)
    out = np.zeros(dst_shape, dtype=data.dtype, order="F")
    # "grid-constant": a point a rounding error outside the first or last voxel centre still
    # takes that voxel (plain "constant" would zero a whole edge slice); beyond it, 0.
    ndimage.affine_transform(
        data, matrix[:3, :3], offset=matrix[:3, 3], output=out, order=0, mode="grid-constant"
    )
    return out


def resample_linear(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    dst_affine: np.ndarray,
) -> np.ndarray:
    """Trilinear resampling of an image; the result keeps ``data``'s dtype (ints rounded, clipped)."""
    matrix = voxel_map(src_affine, dst_affine)
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

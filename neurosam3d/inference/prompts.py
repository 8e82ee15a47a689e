"""User prompts from the command line: ``x,y,z,+`` / ``x,y,z,-`` points and ``x0,y0,z0,x1,y1,z1`` boxes.

Coordinates are either voxel indices of the original image (i, j, k along its array axes; the
default) or world coordinates in mm (``world=True``: the NIfTI/nibabel RAS+ scanner frame, as in
the image's affine). Both are converted to original voxel indices (float64).
"""

from __future__ import annotations

import numpy as np

_LABELS = {"+": 1, "pos": 1, "1": 1, "-": 0, "neg": 0, "0": 0}


def _floats(text: str, count: int, what: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count:
        raise ValueError(f"{what} {text!r}: expected {count} comma-separated values")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{what} {text!r}: coordinates must be numbers") from None
    if not all(np.isfinite(values)):
        raise ValueError(f"{what} {text!r}: coordinates must be finite numbers (no nan or inf)")
    return values


def world_to_voxel(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``N x 3`` world mm -> ``N x 3`` original voxel indices through the inverse of ``affine``.

    Raises ``ValueError`` for a singular affine (no voxel corresponds to a world point)."""
    check_affine(affine)
    inverse = np.linalg.inv(affine)
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def check_affine(affine: np.ndarray, where: str = "the image") -> None:
    """Raise ``ValueError`` unless ``affine`` is a finite, invertible voxel -> world mapping."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    if not np.isfinite(affine).all() or abs(np.linalg.det(linear)) < 1e-12:
        raise ValueError(
            f"{where} has a singular or non-finite affine (voxel -> world matrix "
            f"{np.round(linear, 4).tolist()}): its voxels have no world positions; fix the "
            "header (sform/qform) first"
        )


def parse_points(
    texts: list[str], affine: np.ndarray, *, world: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``x,y,z,+`` or ``x,y,z,-`` -> (``N x 3`` voxel indices float64, ``N`` labels int64)."""
    if not texts:
        raise ValueError("give at least one point: --point x,y,z,+")
    coords, labels = [], []
    for text in texts:
        head, _, sign = text.rpartition(",")
        if sign.strip() not in _LABELS:
            raise ValueError(f"point {text!r}: end with ',+' (foreground) or ',-' (background)")
        coords.append(_floats(head, 3, "point"))
        labels.append(_LABELS[sign.strip()])
    points = np.array(coords, dtype=np.float64)
    if world:
        points = world_to_voxel(points, affine)
    if not (labels := np.array(labels, dtype=np.int64)).any():
        raise ValueError("give at least one positive point (x,y,z,+)")
    return points, labels


def parse_box(text: str, affine: np.ndarray, *, world: bool = False) -> np.ndarray:
    """Box ``x0,y0,z0,x1,y1,z1`` (two opposite corners, inclusive) -> ``2 x 3`` voxel indices."""
    corners = np.array(_floats(text, 6, "box"), dtype=np.float64).reshape(2, 3)
    if world:
        corners = world_to_voxel(corners, affine)
    return np.stack([corners.min(axis=0), corners.max(axis=0)])


def check_inside(points: np.ndarray, shape: tuple[int, ...], what: str = "point") -> None:
    """Raise ``ValueError`` naming the first of ``points`` (voxel indices) outside ``shape``."""
    for p in points:
        if (p < -0.5).any() or (p > np.asarray(shape[:3]) - 0.5).any():
            raise ValueError(
                f"{what} at voxel {np.round(p, 2).tolist()} lies outside the image of shape "
                f"{list(shape[:3])} (check --world and the coordinate order i,j,k)"
            )

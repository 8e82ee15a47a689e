"""Mapping between an image's original voxel grid and the model's working grid, both ways.

Three coordinate systems appear (all voxel indices are along array axes, not world axes):

* **original** voxel indices ``(i, j, k)`` of the NIfTI array as stored (any orientation, e.g.
  LPS, PSR, LAS), world coordinates ``affine @ (i, j, k, 1)`` in mm;
* **working** voxel indices ``(u, v, w)`` of the image, optionally reoriented to
  ``orientation`` (e.g. RAS) and resampled to ``spacing_mm``: one affine map
  ``working = matrix @ original`` (:class:`GridMap`);
* **window** voxel indices: working indices minus a :class:`Box`'s ``start``; a box is the
  model's input crop and may stick out of the working grid (that part is padding).

**The resampling convention** (one for the whole package: ``prepare --spacing-mm``, training,
evaluation, ``predict`` and the registered model all plan their grids here): a voxel index is
the voxel's *centre*; resampling keeps the centre of the field of view (the midpoint of the
first and last voxel centres) at the same world position and takes
``floor(n * spacing / spacing_mm)`` voxels per axis (:func:`resampled_shape`), axis
directions unchanged; a point within half a voxel of the outer voxel centres takes the edge
value. This is torchio's ``Resample`` (ITK; SAM-Med3D's preprocessing, so data we resample sit
where upstream's do), save torchio's float rounding of the voxel count; when
``n * spacing / spacing_mm`` is whole it is the same as aligning the outer voxel corners. ``tests/transforms/test_geometry.py`` checks it against torchio on the shipped LPS,
PSR and LAS volumes.

Without resampling the map is a signed axis permutation plus an integer shift, so
:func:`sample_box` and :func:`box_to_original` copy voxels exactly (a round trip returns the
original array bit for bit); with resampling both directions interpolate linearly through the
same exact affine and its inverse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel import orientations
from numpy.typing import DTypeLike
from scipy import ndimage

logger = logging.getLogger(__name__)

Vec3 = tuple[int, int, int]


@dataclass(frozen=True)
class Box:
    """An axis-aligned block of working voxels: ``start`` (inclusive) and ``size``, in voxels."""

    start: Vec3
    size: Vec3

    @property
    def stop(self) -> Vec3:
        """Exclusive end index along each working axis."""
        return tuple(s + n for s, n in zip(self.start, self.size, strict=True))  # type: ignore[return-value]

    @classmethod
    def centred(cls, centre: np.ndarray, size: Vec3) -> Box:
        """The box of ``size`` voxels whose centre is nearest to ``centre`` (working voxels)."""
        start = tuple(
            int(np.floor(c - (n - 1) / 2 + 0.5)) for c, n in zip(centre, size, strict=True)
        )
        return cls(start, size)  # type: ignore[arg-type]

    def contains(self, point: np.ndarray) -> bool:
        """Whether the working-voxel ``point`` (3,) lies inside the box (voxel centres)."""
        return all(
            s - 0.5 <= p < e - 0.5 for p, s, e in zip(point, self.start, self.stop, strict=True)
        )


def centred_start(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
    """First voxel of the ``size``-voxel window centred on ``[lo, hi)`` (voxel indices, ``hi``
    exclusive; any shape, int64 out): ``floor((lo + hi) / 2 - size / 2 + 0.5)``.

    The one placement rule of model windows over a target: evaluation's windows, ``predict``'s
    window over the clicks and training's validation crops (centred on the target's box).
    """
    centre = (np.asarray(lo, dtype=np.float64) + np.asarray(hi, dtype=np.float64)) / 2
    return np.floor(centre - size / 2 + 0.5).astype(np.int64)


@dataclass(frozen=True)
class GridMap:
    """Affine map from original voxel indices to working voxel indices.

    ``matrix``: 4 x 4 float64, ``working = matrix @ original`` (homogeneous column vectors);
    ``shape``: working grid shape in voxels; ``spacing``: working voxel size in mm;
    ``affine``: working voxel -> world mm (``original_affine @ inv(matrix)``);
    ``original_shape``/``original_spacing``: shape (voxels) and voxel size (mm) of the original
    array.
    """

    matrix: np.ndarray
    shape: Vec3
    spacing: tuple[float, float, float]
    affine: np.ndarray
    original_shape: Vec3
    original_spacing: tuple[float, float, float]

    @property
    def resamples(self) -> bool:
        """False when the map is a signed axis permutation with integer shift (exact copies)."""
        linear = np.abs(self.matrix[:3, :3])
        return not np.array_equal(linear, np.round(linear)) or not np.array_equal(
            self.matrix[:3, 3], np.round(self.matrix[:3, 3])
        )

    def to_working(self, points: np.ndarray) -> np.ndarray:
        """``N x 3`` original voxel indices -> ``N x 3`` working voxel indices (float64)."""
        return points @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """``N x 3`` working voxel indices -> ``N x 3`` original voxel indices (float64)."""
        inverse = np.linalg.inv(self.matrix)
        return points @ inverse[:3, :3].T + inverse[:3, 3]


def _spacing3(spacing_mm: float | Sequence[float] | None) -> np.ndarray | None:
    """``spacing_mm`` as 3 floats (one value: isotropic), or None."""
    if spacing_mm is None:
        return None
    values = np.atleast_1d(np.asarray(spacing_mm, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.shape != (3,) or not np.all(values > 0):
        raise ValueError(f"spacing must be one positive value in mm or three, not {spacing_mm!r}")
    return values


#: Voxel sizes within this (mm) of the target spacing are the target spacing: the grid is kept.
SPACING_ATOL_MM = 1e-5
#: Slack of the voxel count's floor: ``n * spacing / target`` within it of a whole number is
#: that number (see :func:`resampled_shape`).
SHAPE_SLACK = 1e-4


def resampled_shape(shape: Sequence[int], spacing: np.ndarray, target: np.ndarray) -> Vec3:
    """Voxels per axis at ``target`` spacing: ``floor(n * spacing / target)``, at least 1.

    torchio's ``Resample`` rule, except that a product within :data:`SHAPE_SLACK` below a whole
    number counts as that number: torchio floors the float product, so a 9-slice 7.5 mm volume
    whose affine says 7.4999995 mm comes out with 8 slices at 7.5 mm (and 54 x 0.5 / 1.5 with
    17 voxels). Where the product is not that close to a whole number the two agree exactly.
    """
    return tuple(  # type: ignore[return-value]
        max(1, int(np.floor(n * s / t + SHAPE_SLACK)))
        for n, s, t in zip(shape, spacing, target, strict=True)
    )


def plan_grid(
    affine: np.ndarray,
    shape: tuple[int, ...],
    orientation: str | None = None,
    spacing_mm: float | Sequence[float] | None = None,
) -> GridMap:
    """The working grid of an image with ``affine`` (4 x 4, voxel -> mm) and ``shape`` (3 axes).

    With ``orientation`` (three axis codes such as ``"RAS"``) the image is reoriented so its axes
    point that way; ``None`` keeps the stored axis order. With ``spacing_mm`` (one value:
    isotropic, or three along the working axes) it is resampled by **the** convention of this
    package (module docstring): the centre of the field of view stays where it is and the shape
    is ``floor(n * spacing / spacing_mm)`` (:func:`resampled_shape`), as torchio's ``Resample``
    (SAM-Med3D's preprocessing) does.
    """
    shape3 = tuple(int(n) for n in shape[:3])
    reorient = np.eye(4)
    reoriented_shape = list(shape3)
    if orientation is not None:
        current = orientations.io_orientation(affine)
        transform = orientations.ornt_transform(
            current, orientations.axcodes2ornt(tuple(orientation))
        )
        # inv_ornt_aff maps reoriented indices to original ones; invert it for the other way.
        reorient = np.linalg.inv(orientations.inv_ornt_aff(transform, shape3))
        for axis, (new_axis, _flip) in enumerate(transform):
            reoriented_shape[int(new_axis)] = shape3[axis]
    reoriented_affine = affine @ np.linalg.inv(reorient)
    spacing = np.sqrt((reoriented_affine[:3, :3] ** 2).sum(axis=0))
    target = _spacing3(spacing_mm)
    if target is not None and np.all(np.abs(spacing - target) <= SPACING_ATOL_MM):
        target = None  # already there (a float32 affine's rounding): exact copies, no resampling
    if target is None:
        zoom = np.ones(3)
        working_shape = tuple(reoriented_shape)
    else:
        zoom = spacing / target
        working_shape = resampled_shape(reoriented_shape, spacing, target)
    # Centre-aligned resampling: u - (m - 1) / 2 = zoom * (c - (n - 1) / 2).
    scale = np.eye(4)
    scale[:3, :3] = np.diag(zoom)
    if target is not None:
        scale[:3, 3] = (np.asarray(working_shape) - 1) / 2 - zoom * (
            np.asarray(reoriented_shape) - 1
        ) / 2
    matrix = scale @ reorient
    logger.debug(
        "working grid %s at %s mm for an original grid %s", working_shape, spacing / zoom, shape3
    )
    return GridMap(
        matrix=matrix,
        shape=working_shape,  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in spacing / zoom),  # type: ignore[arg-type]
        affine=affine @ np.linalg.inv(matrix),
        original_shape=shape3,  # type: ignore[arg-type]
        original_spacing=tuple(float(x) for x in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))),  # type: ignore[arg-type]
    )


def grid_for_image(
    image: nib.Nifti1Image,
    orientation: str | None = None,
    spacing_mm: float | Sequence[float] | None = None,
) -> GridMap:
    """:func:`plan_grid` for a NIfTI image."""
    return plan_grid(image.affine, image.shape, orientation, spacing_mm)


def _axis_permutation(grid: GridMap) -> tuple[list[int], list[bool]]:
    """For each working axis: the original axis it reads and whether it runs backwards."""
    linear = grid.matrix[:3, :3]
    source = [int(np.argmax(np.abs(row))) for row in linear]
    return source, [bool(linear[a, s] < 0) for a, s in enumerate(source)]


def _reoriented_view(volume: np.ndarray, grid: GridMap) -> np.ndarray:
    """The original array seen in working axis order (a view; only without resampling)."""
    source, flipped = _axis_permutation(grid)
    view = np.transpose(volume, source)
    return np.flip(view, axis=[a for a in range(3) if flipped[a]]) if any(flipped) else view


def _read_working(volume, grid: GridMap, grid_sl: tuple[slice, ...]) -> np.ndarray:
    """``volume[...]`` read on working slices ``grid_sl``, in working axis order (no resampling).

    Only the block the slices reach is read from ``volume`` (an array, or anything indexable by
    original-grid slices such as :class:`~.volume.NormalisedVolume`).
    """
    source, flipped = _axis_permutation(grid)
    original: list[slice] = [slice(0, 0)] * 3
    for a in range(3):
        n = grid.original_shape[source[a]]
        lo, hi = grid_sl[a].start, grid_sl[a].stop
        original[source[a]] = slice(n - hi, n - lo) if flipped[a] else slice(lo, hi)
    view = np.transpose(np.asarray(volume[tuple(original)]), source)
    return np.flip(view, axis=[a for a in range(3) if flipped[a]]) if any(flipped) else view


def reoriented(volume: np.ndarray, grid: GridMap) -> np.ndarray:
    """The whole original ``volume`` (I x J x K, any dtype) on a working grid that only
    reorients (no resampling): an exact copy in working axis order, Fortran order."""
    if grid.resamples:
        raise ValueError("reoriented() needs a grid without resampling; use sample_box")
    return np.asfortranarray(_reoriented_view(volume, grid))


def _box_slices(box: Box, shape: Vec3) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the box/grid overlap: (into the grid, into the box); empty slices when disjoint."""
    grid_sl, box_sl = [], []
    for start, stop, n in zip(box.start, box.stop, shape, strict=True):
        lo, hi = max(start, 0), min(stop, n)
        hi = max(hi, lo)
        grid_sl.append(slice(lo, hi))
        box_sl.append(slice(lo - start, hi - start))
    return tuple(grid_sl), tuple(box_sl)


def _box_points(box: Box) -> np.ndarray:
    """``N x 3`` working voxel indices of every voxel in ``box`` (C order)."""
    axes = [np.arange(s, e, dtype=np.float64) for s, e in zip(box.start, box.stop, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def sample_box(
    volume: np.ndarray, grid: GridMap, box: Box, *, order: int = 1, cval: float = 0.0
) -> np.ndarray:
    """Values of the original ``volume`` (I x J x K) at every voxel of ``box``: ``box.size`` float32.

    ``volume``: an array, or anything indexable by original-grid slices that returns arrays (a
    :class:`~.volume.NormalisedVolume`): only the block the box reads is read.

    Voxels outside the original image get ``cval``. ``order`` is the interpolation order used
    when resampling (0 nearest, 1 linear); without resampling voxels are copied exactly. With
    resampling the box is interpolated slab by slab (:data:`SLAB_VOXELS`), so the temporaries
    (coordinates, the block read) stay slab-sized whatever the box.
    """
    out = np.full(box.size, cval, dtype=np.float32)
    if not grid.resamples:
        grid_sl, box_sl = _box_slices(box, grid.shape)
        out[box_sl] = _read_working(volume, grid, grid_sl)
        return out
    for first, slab in _slabs(box):
        out[first : first + slab.size[0]] = _sample_resampled(volume, grid, slab, order, cval)
    return out


def sample_mask(mask: np.ndarray, grid: GridMap, box: Box) -> np.ndarray:
    """``mask`` (bool, I x J x K) on ``box``: ``box.size`` bool, no float copy of the box.

    Without resampling the voxels are copied; with it a working voxel is in the mask where the
    linearly interpolated mask is at least 0.5 (``sample_box(mask, ..., order=1) >= 0.5``,
    computed slab by slab).
    """
    out = np.zeros(box.size, dtype=bool)
    if not grid.resamples:
        grid_sl, box_sl = _box_slices(box, grid.shape)
        out[box_sl] = _reoriented_view(mask, grid)[grid_sl]
        return out
    for first, slab in _slabs(box):
        values = _sample_resampled(mask, grid, slab, 1, 0.0)
        out[first : first + slab.size[0]] = values >= 0.5
    return out


#: Working voxels per slab of the resampling paths (coordinates take 48 bytes per voxel).
SLAB_VOXELS = 1 << 20


def _slabs(box: Box, voxels: int = SLAB_VOXELS):
    """``(offset, sub-box)`` pairs cutting ``box`` along its first axis into ~``voxels`` slabs."""
    plane = max(1, box.size[1] * box.size[2])
    step = max(1, voxels // plane)
    for first in range(0, box.size[0], step):
        size = min(step, box.size[0] - first)
        yield first, Box((box.start[0] + first, *box.start[1:]), (size, *box.size[1:]))  # type: ignore[arg-type]


def _sample_resampled(
    volume: np.ndarray, grid: GridMap, box: Box, order: int, cval: float
) -> np.ndarray:
    """:func:`sample_box` of a resampling ``grid`` on one (slab-sized) ``box``."""
    # Only the block of original voxels the box reads is converted and interpolated.
    footprint = _footprint(grid, box)
    if any(s.stop <= s.start for s in footprint):
        return np.full(box.size, cval, dtype=np.float32)
    sub, offset = restrict_grid(grid, footprint)
    local = _box_points(box) - offset
    coords = sub.to_original(local).T
    block = np.asarray(volume[footprint], dtype=np.float32)
    start = np.array([s.start for s in footprint], dtype=np.float64)[:, None]
    values = _interpolate(block, coords, start, grid.original_shape, order, cval)
    return values.reshape(box.size).astype(np.float32, copy=False)


def _interpolate(
    block: np.ndarray,
    coords: np.ndarray,
    start: np.ndarray,
    shape: tuple[int, ...],
    order: int,
    cval: float,
) -> np.ndarray:
    """Values of ``block`` (the part of an array of ``shape`` from ``start``, ``3 x 1``) at
    ``coords`` (``3 x N`` block voxel indices), by ITK's rule: a point within half a voxel of
    the array's outer voxel centres takes the edge value (the voxel reaches that far), a point
    beyond gets ``cval``. torchio's ``Resample`` (ITK) samples so; scipy's ``"constant"`` mode
    would blend the edge with ``cval`` instead."""
    absolute = coords + start
    upper = np.asarray(shape, dtype=np.float64)[:, None] - 1
    inside = np.all((absolute >= -0.5) & (absolute <= upper + 0.5), axis=0)
    clamped = np.clip(absolute, 0.0, upper) - start
    values = ndimage.map_coordinates(block, clamped, order=order, mode="nearest")
    values[~inside] = cval
    return values


def _footprint(grid: GridMap, box: Box) -> tuple[slice, ...]:
    """Original-grid slices that hold every original voxel whose working position lies in ``box``."""
    corners = np.array(
        [
            [box.start[a] - 1 if bit == 0 else box.stop[a] for a, bit in enumerate(bits)]
            for bits in np.ndindex(2, 2, 2)
        ],
        dtype=np.float64,
    )
    original = grid.to_original(corners)
    lo = np.clip(np.floor(original.min(axis=0)).astype(int), 0, grid.original_shape)
    hi = np.clip(np.ceil(original.max(axis=0)).astype(int) + 1, 0, grid.original_shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def box_to_original(
    values: np.ndarray, grid: GridMap, box: Box, *, dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Put ``values`` (``box.size`` array on working voxels) back onto the original grid.

    Returns an ``original_shape`` array of ``dtype`` (float32 unless told): 0 wherever the box
    does not reach, else the value at the original voxel's working position (exact copy without
    resampling, linear interpolation with it, slab by slab of the original grid). The inverse
    of :func:`sample_box`.
    """
    out = np.zeros(grid.original_shape, dtype=dtype)
    if not grid.resamples:
        grid_sl, box_sl = _box_slices(box, grid.shape)
        _reoriented_view(out, grid)[grid_sl] = values[box_sl]
        return out
    values = np.asarray(values, dtype=np.float32)
    footprint = _footprint(grid, box)
    if any(s.stop <= s.start for s in footprint):
        return out
    sizes = [s.stop - s.start for s in footprint]
    step = max(1, SLAB_VOXELS // max(1, sizes[1] * sizes[2]))
    tail = [np.arange(s.start, s.stop, dtype=np.float64) for s in footprint[1:]]
    for first in range(footprint[0].start, footprint[0].stop, step):
        head = np.arange(first, min(first + step, footprint[0].stop), dtype=np.float64)
        points = np.stack(np.meshgrid(head, *tail, indexing="ij"), axis=-1).reshape(-1, 3)
        local = (grid.to_working(points) - np.asarray(box.start)).T
        sampled = _interpolate(values, local, np.zeros((3, 1)), values.shape, 1, 0.0)
        out[first : first + len(head), footprint[1], footprint[2]] = sampled.reshape(
            len(head), *sizes[1:]
        )
    return out


def restrict_grid(grid: GridMap, footprint: tuple[slice, ...]) -> tuple[GridMap, np.ndarray]:
    """The map of the original voxels in ``footprint`` only, as if that block were the image.

    Returns ``(sub, offset)``: ``sub`` maps block voxel indices (original index minus the
    footprint's start) to working indices minus ``offset`` (``(3,)`` int, the smallest working
    voxel the block reaches), so a working box ``b`` of ``grid`` is ``b.start - offset`` in
    ``sub``. Without resampling ``sub`` is again an exact axis permutation.
    """
    start = np.array([s.start for s in footprint], dtype=np.float64)
    shape = tuple(int(s.stop - s.start) for s in footprint)
    shift = np.eye(4)
    shift[:3, 3] = start
    matrix = grid.matrix @ shift
    corners = np.array(
        [[(0, n - 1)[b] for b, n in zip(bits, shape, strict=True)] for bits in np.ndindex(2, 2, 2)],
        dtype=np.float64,
    )
    working = corners @ matrix[:3, :3].T + matrix[:3, 3]
    offset = np.floor(working.min(axis=0) + 1e-9).astype(int)
    top = np.ceil(working.max(axis=0) - 1e-9).astype(int)
    unshift = np.eye(4)
    unshift[:3, 3] = -offset
    sub_matrix = unshift @ matrix
    sub = GridMap(
        matrix=sub_matrix,
        shape=tuple(int(n) for n in top - offset + 1),  # type: ignore[arg-type]
        spacing=grid.spacing,
        affine=grid.affine @ np.linalg.inv(unshift),
        original_shape=shape,  # type: ignore[arg-type]
        original_spacing=grid.original_spacing,
    )
    return sub, offset


def box_to_footprint(
    values: np.ndarray, grid: GridMap, box: Box, *, dtype: DTypeLike = np.float32
) -> tuple[tuple[slice, ...], np.ndarray]:
    """:func:`box_to_original` on the box's footprint only: ``(slices, values there)``.

    ``slices`` index the original grid (every original voxel whose working position lies in
    ``box``, clipped to the image); the array (``dtype``, float32 unless told) equals
    ``box_to_original(values, grid, box)[slices]``, and the full result is 0 outside it. Memory
    and time are those of the box.
    """
    footprint = _footprint(grid, box)
    if any(s.stop <= s.start for s in footprint):
        return footprint, np.zeros([max(0, s.stop - s.start) for s in footprint], dtype)
    sub, offset = restrict_grid(grid, footprint)
    shifted = Box(tuple(int(a) for a in np.asarray(box.start) - offset), box.size)  # type: ignore[arg-type]
    return footprint, box_to_original(values, sub, shifted, dtype=dtype)

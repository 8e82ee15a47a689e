"""Original grid <-> working grid: exact round trips on real non-RAS volumes, checked against nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from neurosam3d.evaluation.metrics import dice
from neurosam3d.transforms.geometry import Box, box_to_original, grid_for_image, sample_box

NON_RAS = {
    "LPS": "mr_sm",
    "PSR": "t2",
    "LAS": "t2s",
}


@pytest.mark.parametrize("codes", sorted(NON_RAS))
def test_reorientation_matches_nibabel_and_round_trips_exactly(real, codes):
    image = nib.load(real[NON_RAS[codes]])
    assert nib.aff2axcodes(image.affine) == tuple(codes)
    data = np.asarray(image.dataobj).astype(np.float32)
    grid = grid_for_image(image, orientation="RAS")
    assert not grid.resamples
    canonical = nib.as_closest_canonical(image)
    np.testing.assert_allclose(grid.affine, canonical.affine, atol=1e-5)
    full = Box((0, 0, 0), grid.shape)
    np.testing.assert_array_equal(sample_box(data, grid, full), canonical.get_fdata())
    # A box sticking out of the grid on every side: padding outside, exact copy inside.
    box = Box(tuple(-3 for _ in range(3)), tuple(n + 5 for n in grid.shape))
    region = sample_box(data, grid, box, cval=-7.0)
    assert region.shape == box.size and (region[:3] == -7.0).all()
    np.testing.assert_array_equal(box_to_original(region, grid, box), data)
    # A box inside the grid maps back onto its footprint only.
    inner = Box((2, 3, 1), (10, 12, 4))
    back = box_to_original(sample_box(data, grid, inner), grid, inner)
    covered = box_to_original(np.ones(inner.size), grid, inner) > 0
    assert covered.sum() == np.prod(inner.size)
    np.testing.assert_array_equal(back[covered], data[covered])
    assert (back[~covered] == 0).all()


def test_working_voxels_keep_their_world_position(real):
    image = nib.load(real[NON_RAS["PSR"]])
    grid = grid_for_image(image, orientation="RAS")
    points = np.array([[0, 0, 0], [5, 17, 30], [59, 54, 51]], dtype=np.float64)
    working = grid.to_working(points)
    world_original = points @ image.affine[:3, :3].T + image.affine[:3, 3]
    world_working = working @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    np.testing.assert_allclose(world_working, world_original, atol=1e-6)
    np.testing.assert_allclose(grid.to_original(working), points, atol=1e-9)


def test_resampling_round_trip_on_anisotropic_volume(real):
    """t2s (0.5 x 0.5 x 7.5 mm, LAS) to 1 mm isotropic RAS and back: the cord mask survives."""
    seg = nib.load(real["t2s_seg"])
    cord = np.asarray(seg.dataobj) > 0
    grid = grid_for_image(seg, orientation="RAS", spacing_mm=1.0)
    assert grid.resamples
    np.testing.assert_allclose(grid.spacing, (1.0, 1.0, 1.0), atol=1e-6)
    assert nib.aff2axcodes(grid.affine) == ("R", "A", "S")
    extent_original = np.array(seg.shape) * np.array(seg.header.get_zooms())
    extent_working = np.array(grid.shape) * 1.0
    assert np.abs(np.sort(extent_working) - np.sort(extent_original)).max() <= 1.0
    full = Box((0, 0, 0), grid.shape)
    working = sample_box(cord.astype(np.float32), grid, full)
    assert working.shape == grid.shape
    back = box_to_original(working, grid, full) >= 0.5
    # the cord is 2-4 voxels wide at 0.5 mm: sampled at 1 mm and back it loses its rim
    assert dice(back, cord) > 0.85


def test_default_grid_keeps_the_stored_axes(real):
    image = nib.load(real[NON_RAS["LAS"]])
    grid = grid_for_image(image)
    np.testing.assert_array_equal(grid.matrix, np.eye(4))
    np.testing.assert_allclose(grid.affine, image.affine)


@pytest.mark.parametrize("codes", sorted(NON_RAS))
@pytest.mark.parametrize("spacing", [1.5, (1.0, 1.3, 2.0)])
def test_resampled_grid_is_torchio_resample(real, codes, spacing):
    """The one convention: voxel centres exactly where torchio's Resample (SAM-Med3D's) puts
    them, on the shipped LPS, PSR and LAS volumes; with RAS, where ToCanonical then puts them."""
    import torch
    import torchio as tio

    image = nib.load(real[NON_RAS[codes]])
    data = torch.from_numpy(np.asarray(image.dataobj, dtype=np.float32).copy())[None]
    reference = tio.Resample(spacing)(tio.ScalarImage(tensor=data, affine=image.affine))
    grid = grid_for_image(image, spacing_mm=spacing)
    _same_as_torchio(grid, reference, image, spacing)
    if grid.shape == tuple(reference.spatial_shape):  # the values too, edges included
        ours = sample_box(np.asarray(image.dataobj, np.float32), grid, Box((0, 0, 0), grid.shape))
        np.testing.assert_allclose(
            ours, reference.data[0].numpy(), rtol=1e-4, atol=1e-3 * ours.std()
        )
    canonical = tio.ToCanonical()(reference)
    ras = grid_for_image(image, orientation="RAS", spacing_mm=spacing)
    if isinstance(spacing, float):  # anisotropic targets apply to the working (RAS) axes
        _same_as_torchio(ras, canonical, image, spacing)


def _same_as_torchio(grid, reference, image, spacing):
    """Same voxel centres as torchio's output, except on an axis where torchio's float floor
    of a whole voxel count drops a voxel (``resampled_shape``): there exactly one more voxel,
    the field of view's centre still shared."""
    theirs = np.asarray(reference.spatial_shape)
    ours = np.asarray(grid.shape)
    extra = ours - theirs
    assert set(extra.tolist()) <= {0, 1}
    if not extra.any():
        np.testing.assert_allclose(grid.affine, reference.affine, atol=1e-6)
        return
    target = np.broadcast_to(np.asarray(spacing, float), (3,))
    counts = np.sort(np.asarray(image.shape[:3]) * np.asarray(grid.original_spacing))
    assert np.any(np.abs(counts / np.sort(target) - np.round(counts / np.sort(target))) < 1e-4)
    np.testing.assert_allclose(grid.affine[:3, :3], reference.affine[:3, :3], atol=1e-6)
    centre = lambda affine, shape: affine[:3, :3] @ ((shape - 1) / 2) + affine[:3, 3]  # noqa: E731
    np.testing.assert_allclose(
        centre(grid.affine, ours), centre(np.asarray(reference.affine), theirs), atol=1e-5
    )


@pytest.mark.parametrize("codes", sorted(NON_RAS))
def test_reorient_and_resample_round_trip_keeps_world_positions(real, codes):
    """Original -> RAS at 1.5 mm -> original: every working voxel centre maps to the world point
    it names, and an image resampled to its own spacing comes back bit for bit."""
    image = nib.load(real[NON_RAS[codes]])
    grid = grid_for_image(image, orientation="RAS", spacing_mm=1.5)
    working = np.array([[0, 0, 0], [3, 5, 7], list(np.asarray(grid.shape) - 1)], float)
    world = working @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    original = grid.to_original(working)
    np.testing.assert_allclose(
        original @ image.affine[:3, :3].T + image.affine[:3, 3], world, atol=1e-6
    )
    np.testing.assert_allclose(grid.to_working(original), working, atol=1e-9)
    # the field of view's centre stays put
    centre = (np.asarray(image.shape[:3]) - 1) / 2
    np.testing.assert_allclose(grid.to_working(centre[None])[0], (np.asarray(grid.shape) - 1) / 2)
    own = grid_for_image(image, spacing_mm=grid_for_image(image).original_spacing)
    data = np.asarray(image.dataobj, np.float32)
    full = Box((0, 0, 0), own.shape)
    np.testing.assert_array_equal(box_to_original(sample_box(data, own, full), own, full), data)

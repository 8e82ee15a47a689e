"""The ``sam-med3d`` preset on a real non-RAS, anisotropic volume: every step's geometry.

The shipped T2* spinal-cord scan (samples/amos_style, Va) is LAS, 49 x 54 x 9 voxels of
0.5 x 0.5 x 7.5 mm (slightly oblique), with its manual cord mask. Expected values below are
worked out by hand from upstream's steps (torchio ``Resample(1.5)`` floors the extent and keeps
the centre; ``ToCanonical`` flips L to R; ``CropOrPad`` centres on the mask's bounding box).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio
from nibabel import orientations

from neurosam3d.evaluation.metrics import score_masks
from neurosam3d.evaluation.protocol import ProtocolConfig, target_seed
from neurosam3d.evaluation.sammed3d import (
    PasteBack,
    crop,
    crop_start,
    run_sam_med3d,
    working_image,
    working_mask,
)
from neurosam3d.io.nifti import make_image

from .oracle import OracleModel

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
IMAGE = SAMPLES / "amos_style/imagesVa/sct_t2s.nii.gz"
MASK = SAMPLES / "amos_style/labelsVa/sct_t2s.nii.gz"


@pytest.fixture(scope="module")
def case():
    image = nib.load(IMAGE)
    mask = np.asarray(nib.load(MASK).dataobj) > 0
    return image, mask, working_image(image)


def test_resample_and_canonical_grid(case):
    image, _, work = case
    assert orientations.aff2axcodes(image.affine) == ("L", "A", "S")
    # floor(49 * 0.5 / 1.5) = 16; floor(54 * 0.4999999 / 1.5) = 17 (the stored spacing is just
    # under 0.5 mm); floor(9 * 7.499999 / 1.5) = 44.
    assert work.shape == (16, 17, 44)
    assert orientations.aff2axcodes(work.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.sqrt((work.affine[:3, :3] ** 2).sum(axis=0)), 1.5, atol=1e-4)
    # Centres coincide: the world centre of both grids is the same point.
    centre = image.affine @ np.r_[(np.array(image.shape) - 1) / 2, 1]
    np.testing.assert_allclose(work.affine @ np.r_[(np.array(work.shape) - 1) / 2, 1], centre)


def test_crop_is_centred_on_the_mask_as_torchio_crops(case):
    _, mask, work = case
    mask_w = working_mask(mask, work)
    idx = np.argwhere(mask_w)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    np.testing.assert_array_equal(lo, [3, 5, 0])
    np.testing.assert_array_equal(hi, [13, 12, 44])
    # Centres 8.0, 8.5 (shifted down half a voxel for an even crop), 22.0; minus 64.
    start = crop_start(lo, hi, 128)
    np.testing.assert_array_equal(start, [-56, -56, -42])
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(work.data)[None], affine=work.affine),
        label=tio.LabelMap(tensor=torch.from_numpy(mask_w)[None], affine=work.affine),
    )
    cropped = tio.CropOrPad((128, 128, 128), mask_name="label")(subject)
    np.testing.assert_array_equal(cropped.image.data[0].numpy(), crop(work.data, start, 128))
    np.testing.assert_array_equal(cropped.label.data[0].numpy(), crop(mask_w, start, 128))
    np.testing.assert_allclose(cropped.image.affine[:, 3], work.affine @ np.r_[start, 1], atol=1e-6)


def test_paste_back_is_torchio_nearest_onto_the_original_grid(case):
    image, mask, work = case
    mask_w = working_mask(mask, work)
    start = crop_start(*(lambda i: (i.min(axis=0), i.max(axis=0) + 1))(np.argwhere(mask_w)), 128)
    paste = PasteBack(work, start, 128)
    # The 128^3 crop at 1.5 mm (192 mm) holds the whole 24.5 x 27 x 67.5 mm image.
    assert paste.footprint == (slice(0, 49), slice(0, 54), slice(0, 9))
    back = np.zeros(mask.shape, np.uint8)
    back[paste.footprint] = paste(crop(mask_w, start, 128))
    reference = tio.ScalarImage(tensor=torch.zeros((1, *mask.shape)), affine=image.affine)
    label = tio.LabelMap(tensor=torch.from_numpy(mask_w)[None], affine=work.affine)
    expected = tio.Resample(reference)(label).data[0].numpy()
    np.testing.assert_array_equal(back, expected)
    # The round trip through 1.5 mm loses the cord's 0.5 mm detail, but keeps its bulk.
    assert score_masks(back > 0, mask, (0.5, 0.5, 7.5)).dice > 0.85


def test_clicks_accumulate_on_a_zero_initial_mask_and_scores_are_on_the_original_grid(
    case, oracle, tmp_path
):
    """A perfect model (the oracle, fed an image whose bright voxels are the cord)."""
    image, mask, _ = case
    bright = make_image((1.0 + 2.0 * mask).astype(np.float32), image.affine, like=image)
    work = working_image(bright)
    config = ProtocolConfig(protocol="sam-med3d", clicks=3)
    assert config.nsd_tolerance_mm == 1.0
    generator = torch.Generator().manual_seed(target_seed(0, "t2s", "cord"))
    result = run_sam_med3d(OracleModel(128), work, mask, (0.5, 0.5, 7.5), config, generator)
    # One crop encoded; every click decoded with all clicks so far and a mask prompt (zeros
    # first, then the previous logits).
    assert len(oracle.images) == 1
    assert oracle.predictions == [(0, 1, True), (0, 2, True), (0, 3, True)]
    # Upstream's steps written with torchio: CropOrPad on the mask, ZNormalization on voxels
    # > 0, the (perfect) model's mask of the crop, pasted into the working grid, torchio
    # Resample (nearest) onto the original grid.
    mask_w = working_mask(mask, work)
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(work.data)[None], affine=work.affine),
        label=tio.LabelMap(tensor=torch.from_numpy(mask_w)[None], affine=work.affine),
    )
    steps = tio.Compose(
        [
            tio.CropOrPad((128, 128, 128), mask_name="label"),
            tio.ZNormalization(masking_method=lambda x: x > 0),
        ]
    )
    roi = steps(subject).image.data[0].numpy() > 0.5
    start = np.array([-56, -56, -42])  # as in test_crop_is_centred_on_the_mask_as_torchio_crops
    pasted = roi[tuple(slice(-a, -a + n) for a, n in zip(start, work.shape, strict=True))]
    reference = tio.ScalarImage(tensor=torch.zeros((1, *mask.shape)), affine=image.affine)
    label = tio.LabelMap(tensor=torch.from_numpy(pasted.astype(np.uint8))[None], affine=work.affine)
    expected_mask = tio.Resample(reference)(label).data[0].numpy() > 0
    np.testing.assert_array_equal(result.full_prediction(mask.shape), expected_mask)
    expected = score_masks(expected_mask, mask, (0.5, 0.5, 7.5), tolerance_mm=1.0)
    assert expected.dice > 0.7  # the cord, through 1.5 mm and back
    for step in result.clicks:
        assert step.scores.dice == pytest.approx(expected.dice, abs=1e-12)
        assert step.scores.nsd == pytest.approx(expected.nsd, abs=1e-12)
        assert (step.windows, step.windows_predicted, step.seeded_clicks) == (1, 1, 0)


def test_sam_med3d_refuses_a_grid_of_its_own():
    with pytest.raises(ValueError, match="fixes its own grid"):
        ProtocolConfig(protocol="sam-med3d", spacing_mm=1.0)
    with pytest.raises(ValueError, match="unknown protocol"):
        ProtocolConfig(protocol="nnunet")

"""Inference from user clicks: prompt parsing, window growth, NIfTI output read alike by ITK."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from evaluation.oracle import OracleModel

from neurosam3d.inference import predict_file
from neurosam3d.inference.prompts import check_inside, parse_box, parse_points


def test_world_points_map_to_the_same_voxels(real):
    image = nib.load(real["t2"])  # PSR
    voxels = np.array([[10.0, 20.0, 30.0], [59.0, 0.0, 51.0]])
    world = voxels @ image.affine[:3, :3].T + image.affine[:3, 3]
    texts = [
        ",".join(f"{v:.6f}" for v in w) + sign for w, sign in zip(world, [",+", ",-"], strict=True)
    ]
    points, labels = parse_points(texts, image.affine, world=True)
    np.testing.assert_allclose(points, voxels, atol=1e-4)
    assert labels.tolist() == [1, 0]
    box = parse_box("30,20,10,5,25,40", image.affine)
    np.testing.assert_array_equal(box, [[5, 20, 10], [30, 25, 40]])


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["1,2,3"], "end with"),
        (["1,2,+"], "expected 3"),
        (["a,2,3,+"], "numbers"),
        (["1,2,3,-"], "positive"),
    ],
)
def test_bad_points_are_rejected_with_a_reason(texts, message):
    with pytest.raises(ValueError, match=message):
        parse_points(texts, np.eye(4))


def test_point_outside_the_image_is_rejected():
    with pytest.raises(ValueError, match="outside the image"):
        check_inside(np.array([[5.0, 70.0, 1.0]]), (60, 55, 52))


def test_mask_grows_across_window_borders_and_lands_on_the_original_grid(real, tmp_path, oracle):
    """The whole cervical cord (PSR, 55 voxels long) from one click with 16^3 windows."""
    seg = nib.load(real["t2_seg"])
    cord = np.asarray(seg.dataobj) > 0
    # The "image" is the cord itself, so the perfect stand-in model returns the cord in each window.
    image_path = tmp_path / "cord_as_image.nii.gz"
    nib.save(nib.Nifti1Image(cord.astype(np.float32), seg.affine), image_path)
    click = np.argwhere(cord)[len(np.argwhere(cord)) // 2]
    out = tmp_path / "mask.nii.gz"
    result = predict_file(
        OracleModel(16), image_path, [",".join(map(str, click)) + ",+"], out, modality="MR"
    )
    assert result.windows > 1
    np.testing.assert_array_equal(result.mask, cord)
    # Each window was encoded once.
    assert len(oracle.images) == result.windows

    import SimpleITK as sitk

    written = nib.load(out)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, seg.affine, atol=1e-6)
    itk = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(itk).transpose(2, 1, 0), cord.astype(np.uint8)
    )
    # ITK works in LPS: flip the first two world axes of nibabel's RAS affine to compare.
    lps = np.diag([-1.0, -1.0, 1.0]) @ written.affine[:3, :3]
    spacing = np.array(itk.GetSpacing())
    np.testing.assert_allclose(spacing, np.sqrt((lps**2).sum(axis=0)), atol=1e-5)
    np.testing.assert_allclose(np.array(itk.GetDirection()).reshape(3, 3), lps / spacing, atol=1e-5)
    np.testing.assert_allclose(itk.GetOrigin(), [-1, -1, 1] * written.affine[:3, 3], atol=1e-4)
    # Deterministic bytes: the same clicks give the same file.
    again = tmp_path / "again.nii.gz"
    predict_file(
        OracleModel(16), image_path, [",".join(map(str, click)) + ",+"], again, modality="MR"
    )
    assert again.read_bytes() == out.read_bytes()


def test_box_limits_the_prediction(real, tmp_path, oracle):
    seg = nib.load(real["t2_seg"])
    cord = np.asarray(seg.dataobj) > 0
    image_path = tmp_path / "cord_as_image.nii.gz"
    nib.save(nib.Nifti1Image(cord.astype(np.float32), seg.affine), image_path)
    click = np.argwhere(cord)[len(np.argwhere(cord)) // 2]
    lo, hi = click - 4, click + 4
    box = ",".join(map(str, [*lo, *hi]))
    result = predict_file(
        OracleModel(16),
        image_path,
        [",".join(map(str, click)) + ",+"],
        tmp_path / "m.nii.gz",
        box=box,
        modality="MR",
    )
    inside = np.zeros_like(cord)
    inside[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    np.testing.assert_array_equal(result.mask, cord & inside)


def test_cli_segments_a_shipped_ct_from_world_clicks(real, tmp_path):
    import torch
    from typer.testing import CliRunner

    from neurosam3d.cli import app
    from neurosam3d.model import build_model, save_safetensors

    torch.manual_seed(0)
    checkpoint = save_safetensors(build_model("tiny"), tmp_path / "tiny.safetensors")
    image_path = real["ct_sm"]
    image = nib.load(image_path)
    world = image.affine @ np.array([81.0, 58.0, 19.0, 1.0])
    point = ",".join(f"{v:.3f}" for v in world[:3])
    out = tmp_path / "mask.nii.gz"
    args = ["predict", str(image_path), "--checkpoint", str(checkpoint), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--world", "--point", point + ",+"])
    assert result.exit_code == 0, result.output
    written = nib.load(out)
    assert written.shape == image.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, image.affine, atol=1e-6)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
    outside = CliRunner().invoke(app, [*args, "--point", "500,1,1,+"])
    assert outside.exit_code == 2 and "outside the image" in outside.output


MSD_4D = (
    Path(__file__).resolve().parents[2]
    / "samples/msd/Task101_SpinalCordSCT/imagesTr/sct_001.nii.gz"
)


def test_multichannel_image_needs_a_channel_and_singleton_axis_is_dropped(tmp_path, oracle):
    image = nib.load(MSD_4D)
    assert image.shape[3] == 2  # the shipped MSD sample is a 2-channel 4D image
    click = ["24,27,4,+"]
    with pytest.raises(ValueError, match=r"sct_001\.nii\.gz: .*shape \(49, 54, 9, 2\).*--channel"):
        predict_file(OracleModel(16), MSD_4D, click, tmp_path / "m.nii.gz", modality="MR")
    with pytest.raises(ValueError, match="no channel 2"):
        predict_file(OracleModel(16), MSD_4D, click, tmp_path / "m.nii.gz", channel=2)
    result = predict_file(
        OracleModel(16), MSD_4D, click, tmp_path / "c1.nii.gz", modality="MR", channel=1
    )
    assert result.mask.shape == image.shape[:3] == nib.load(tmp_path / "c1.nii.gz").shape
    # The same channel saved as X x Y x Z x 1 needs no --channel and gives the same mask.
    single = tmp_path / "single.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., 1:2], image.affine), single)
    again = predict_file(OracleModel(16), single, click, tmp_path / "s.nii.gz", modality="MR")
    np.testing.assert_array_equal(again.mask, result.mask)
    np.testing.assert_array_equal(nib.load(tmp_path / "s.nii.gz").affine, image.affine)


def test_cli_channel_option_on_a_shipped_msd_image(tmp_path):
    import torch
    from typer.testing import CliRunner

    from neurosam3d.cli import app
    from neurosam3d.model import build_model, save_safetensors

    torch.manual_seed(0)
    checkpoint = save_safetensors(build_model("tiny"), tmp_path / "tiny.safetensors")
    out = tmp_path / "mask.nii.gz"
    args = ["predict", str(MSD_4D), "--checkpoint", str(checkpoint), "--out", str(out)]
    refused = CliRunner().invoke(app, [*args, "--point", "24,27,4,+"])
    assert refused.exit_code == 2
    assert "sct_001.nii.gz" in refused.output and "(49, 54, 9, 2)" in refused.output
    assert "--channel" in refused.output and not out.exists()
    result = CliRunner().invoke(app, [*args, "--point", "24,27,4,+", "--channel", "0"])
    assert result.exit_code == 0, result.output
    assert nib.load(out).shape == (49, 54, 9)

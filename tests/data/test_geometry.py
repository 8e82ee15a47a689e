"""Masks always lie on the image grid: labels on another grid are placed by world coordinates
(nearest neighbour), and ``resample_spacing`` moves image and masks to a new grid together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurosam3d.data.config import config_for_layout
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.io.nifti import load_nifti, make_image, save_nifti
from tests.data.conftest import add_case, write_nnunet


def _prepare(tmp_path: Path, image: Path, labels: dict[str, Path], **options) -> Path:
    root = write_nnunet(tmp_path / "Dataset920_Grid", {"spinal_cord": 1})
    for case_id, label in labels.items():
        add_case(root, case_id, image, label)
    prepare_dataset(config_for_layout("nnunet", root), tmp_path / "out", workers=1, **options)
    return tmp_path / "out" / "Dataset920_Grid"


def test_label_on_other_grid_is_placed_by_world_coordinates(tmp_path: Path, t2s) -> None:
    image, label = t2s
    source = load_nifti(label)
    cord = np.asanyarray(source.dataobj)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = cord.shape[0] - 1  # voxel i -> I-1-i: same world points, axis reversed
    flipped = make_image(cord[::-1].copy(), source.affine @ flip, like=source)
    save_nifti(flipped, tmp_path / "flipped.nii.gz")
    shift = np.eye(4)
    shift[:3, 3] = [5, 7, 0]  # a crop starting at voxel (5, 7, 0)
    cropped = make_image(cord[5:-5, 7:-7].copy(), source.affine @ shift, like=source)
    save_nifti(cropped, tmp_path / "cropped.nii.gz")
    tree = _prepare(
        tmp_path,
        image,
        {"flipped": tmp_path / "flipped.nii.gz", "cropped": tmp_path / "cropped.nii.gz"},
    )
    for case_id in ("flipped", "cropped"):
        mask = load_nifti(tree / f"labelsTr/spinal_cord/{case_id}.nii.gz")
        assert np.array_equal(np.asanyarray(mask.dataobj), cord)
        assert np.allclose(mask.affine, load_nifti(image).affine)


def test_resample_spacing_moves_image_and_masks_together(tmp_path: Path, t2s) -> None:
    image, label = t2s
    tree = _prepare(tmp_path, image, {"c": label}, resample_spacing=(1.0, 1.0, 7.5))
    out_image = load_nifti(tree / "imagesTr/c.nii.gz")
    mask = load_nifti(tree / "labelsTr/spinal_cord/c.nii.gz")
    assert out_image.shape == mask.shape == (25, 27, 9)  # 49x54x9 at 0.5x0.5x7.5 mm
    assert np.allclose(out_image.affine, mask.affine)
    assert np.allclose(np.sqrt((out_image.affine[:3, :3] ** 2).sum(0)), [1.0, 1.0, 7.5], atol=1e-3)
    assert out_image.get_data_dtype() == np.float32  # native dtype kept
    original = np.asanyarray(load_nifti(label).dataobj)
    assert np.array_equal(np.asanyarray(mask.dataobj), original[::2, ::2, :])  # nearest
    row = pd.read_parquet(tmp_path / "out" / "manifest.parquet").iloc[0]
    assert list(row["shape"]) == [25, 27, 9] and row.voxel_count == int(original[::2, ::2].sum())

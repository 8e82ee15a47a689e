"""Masks always lie on the image grid: labels on another grid are placed by world coordinates
(nearest neighbour), and ``spacing_mm`` (and ``orientation``) move image and masks to a new grid together."""

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


def test_spacing_mm_moves_image_and_masks_together(tmp_path: Path, t2s) -> None:
    """prepare --spacing-mm --orientation: image and masks on the grid torchio's Resample and
    ToCanonical give (the package's one convention), masks placed by nearest neighbour."""
    import torch
    import torchio as tio

    image, label = t2s
    tree = _prepare(tmp_path, image, {"c": label}, spacing_mm=(1.0, 1.0, 7.5), orientation="RAS")
    out_image = load_nifti(tree / "imagesTr/c.nii.gz")
    mask = load_nifti(tree / "labelsTr/spinal_cord/c.nii.gz")
    source = load_nifti(label)
    original = np.asanyarray(source.dataobj)
    ras = tio.ToCanonical()(
        tio.LabelMap(tensor=torch.from_numpy(original.copy())[None], affine=source.affine)
    )
    expected = tio.Resample((1.0, 1.0, 7.5))(ras)
    # torchio floors 26.99999 and 8.99999 voxels (neurosam3d.transforms.geometry.resampled_shape)
    assert tuple(expected.spatial_shape) == (24, 26, 8)
    assert out_image.shape == mask.shape == (24, 27, 9)
    assert np.allclose(out_image.affine, mask.affine)
    np.testing.assert_allclose(out_image.affine[:3, :3], expected.affine[:3, :3], atol=1e-5)
    # ... so their grid is ours less the last voxel of axes 1 and 2, moved by half a voxel
    shift = np.array([0.0, 0.5, 0.5])
    np.testing.assert_allclose(
        out_image.affine[:3, :3] @ shift + out_image.affine[:3, 3],
        expected.affine[:3, 3],
        atol=1e-4,
    )
    assert out_image.get_data_dtype() == np.float32  # native dtype kept
    placed = np.asanyarray(mask.dataobj)
    # nearest neighbour by world position: each mask voxel is the label voxel whose centre is
    # nearest (axis 1 sits half-way between two label voxels, 54 -> 27: either is nearest)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in placed.shape], indexing="ij"), -1)
    world = index.reshape(-1, 3) @ out_image.affine[:3, :3].T + out_image.affine[:3, 3]
    source_index = (world - source.affine[:3, 3]) @ np.linalg.inv(source.affine[:3, :3]).T
    low = np.clip(np.floor(source_index + 0.5 - 1e-3).astype(int), 0, np.array(original.shape) - 1)
    high = np.clip(np.floor(source_index + 0.5 + 1e-3).astype(int), 0, np.array(original.shape) - 1)
    values = placed.reshape(-1)
    assert ((values == original[tuple(low.T)]) | (values == original[tuple(high.T)])).all()
    assert values.sum() > 0.2 * original.sum()  # 0.5 -> 1 mm in plane: about a quarter
    row = pd.read_parquet(tmp_path / "out" / "manifest.parquet").iloc[0]
    assert list(row["shape"]) == [24, 27, 9] and row.voxel_count == int(placed.sum())

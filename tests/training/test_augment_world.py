"""Augmentations run in world space: on the anisotropic T2* (0.5 x 0.5 x 7.5 mm) a rotation is
a rotation in millimetres, not a shear of the voxel grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from neurosam3d.training.augment import apply_augmentation, build_augmentation

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "amos_style"


def _extent(mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask > 0)
    return idx.max(axis=0) - idx.min(axis=0) + 1


def test_random_affine_rotates_in_millimetres_on_an_anisotropic_grid() -> None:
    image = nib.load(SAMPLES / "imagesVa" / "sct_t2s.nii.gz")
    cord = (np.asarray(nib.load(SAMPLES / "labelsVa" / "sct_t2s.nii.gz").dataobj) > 0).astype(
        np.uint8
    )
    spacing = np.array(image.header.get_zooms()[:3], dtype=np.float64)
    assert np.allclose(spacing, [0.5, 0.5, 7.5], atol=1e-3)
    data = np.asarray(image.dataobj, dtype=np.float32)
    before = _extent(cord)
    assert before[2] == 9  # the cord runs through all 9 slices (67.5 mm)
    # 90 degrees about the first axis: the cord, 67.5 mm along the third axis, turns to the
    # second, which is 27 mm (54 voxels) long; it then crosses it and is one slice thick
    rotate = build_augmentation(
        [{"name": "RandomAffine", "degrees": [90, 90, 0, 0, 0, 0], "scales": 0, "p": 1.0}]
    )
    _, rotated = apply_augmentation(rotate, data, cord, seed=0, spacing=spacing)
    after = _extent(rotated)
    assert after[1] >= 40 and after[2] <= 2, after
    # the voxel-grid rotation (what an isotropic affine gives) maps 9 slices onto 9 voxels: a shear
    _, sheared = apply_augmentation(rotate, data, cord, seed=0, spacing=np.ones(3))
    assert _extent(sheared)[1] <= 12

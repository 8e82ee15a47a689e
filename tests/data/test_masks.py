"""One-pass class boxes and the fast mask encoding, against plain numpy and nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from neurosam3d.data.labels import ClassSpec
from neurosam3d.data.masks import MaskEncoder, class_mask, label_boxes
from neurosam3d.io.nifti import load_nifti, make_image, nifti_bytes


def test_boxes_and_masks_match_plain_numpy(ct_small) -> None:
    labels = np.asanyarray(load_nifti(ct_small[1]).dataobj)
    boxes = label_boxes(labels)
    assert sorted(boxes) == sorted(int(v) for v in np.unique(labels) if v)
    for value, box in boxes.items():
        nz = np.nonzero(labels == value)
        assert [(s.start, s.stop) for s in box] == [(int(a.min()), int(a.max()) + 1) for a in nz]
        mask, count = class_mask(labels, ClassSpec("x", "x", (value,)), box)
        assert np.array_equal(mask, labels == value) and count == len(nz[0])
    both = tuple(sorted(boxes)[:2])
    mask, count = class_mask(labels, ClassSpec("x", "x", both), boxes[both[0]])
    assert count == int(np.isin(labels[boxes[both[0]]], both).sum())


def test_signed_labels_use_the_fallback(ct_small) -> None:
    labels = np.asanyarray(load_nifti(ct_small[1]).dataobj).astype(np.int32)
    labels[0, 0, 0] = -3
    boxes = label_boxes(labels)
    assert boxes[-3] == (slice(0, 1), slice(0, 1), slice(0, 1))
    assert set(boxes) - {-3} == {int(v) for v in np.unique(labels) if v > 0}


def test_encoder_bytes_equal_nibabel_serialisation(tmp_path: Path, t2s) -> None:
    reference = load_nifti(t2s[1])
    mask = np.asfortranarray((np.asanyarray(reference.dataobj) > 0).astype(np.uint8))
    encoder = MaskEncoder(mask.shape, reference.affine, reference, compresslevel=1)
    data = encoder.encode(mask)
    assert data == nifti_bytes(make_image(mask, reference.affine, like=reference), compresslevel=1)
    path = tmp_path / "m.nii.gz"
    path.write_bytes(data)
    loaded = nib.load(path)
    assert loaded.get_data_dtype() == np.uint8 and np.array_equal(loaded.dataobj, mask)
    assert np.allclose(loaded.affine, reference.affine)

"""One-pass class boxes and the fast mask encoding, against plain numpy and nibabel."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from neurosam3d.data.labels import ClassSpec
from neurosam3d.data.masks import MaskEncoder, class_masks, label_boxes, union_box
from neurosam3d.io.nifti import load_nifti, make_image


def test_boxes_and_masks_match_plain_numpy(ct_small) -> None:
    labels = np.asanyarray(load_nifti(ct_small[1]).dataobj)
    boxes = label_boxes(labels)
    assert sorted(boxes) == sorted(int(v) for v in np.unique(labels) if v)
    both = tuple(sorted(boxes)[:2])
    union = union_box([boxes[v] for v in both])
    classes = [(ClassSpec(str(v), str(v), (v,)), box) for v, box in boxes.items()]
    classes.append((ClassSpec("both", "both", both), union))
    for spec, box, mask, count in class_masks(labels, classes):
        expected = np.isin(labels, spec.values)
        nz = np.nonzero(expected)
        assert [(s.start, s.stop) for s in box] == [(int(a.min()), int(a.max()) + 1) for a in nz]
        assert np.array_equal(mask, expected) and count == len(nz[0])  # buffer reset each time


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
    assert gzip.decompress(data) == make_image(mask, reference.affine, like=reference).to_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip mtime 0: the same mask always gives the same bytes
    assert encoder.encode(np.ascontiguousarray(mask)) == data
    path = tmp_path / "m.nii.gz"
    path.write_bytes(data)
    loaded = nib.load(path)
    assert loaded.get_data_dtype() == np.uint8 and np.array_equal(loaded.dataobj, mask)
    assert np.allclose(loaded.affine, reference.affine)

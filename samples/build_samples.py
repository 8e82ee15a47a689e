"""Rebuild ``samples/`` from the read-only shared sample data (``../shared/data``).

Every raw file is copied byte for byte, except two documented derivations for the MSD sample
(see samples/README.md): its 4D image stacks the real T2* volume with the real T2 volume of the
same subject resampled onto the T2* grid by scanner world coordinates, and its label map merges
the two real manual masks (cord, grey matter) into one map. Run from the repository root:
``.venv/bin/python samples/build_samples.py [SHARED_DATA]``.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from neurosam3d.io.nifti import load_nifti, make_image, save_nifti

SAMPLES = Path(__file__).resolve().parent
TS = "totalsegmentator-examples"
SCT = "sct-testing-data"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def build_nnunet(shared: Path) -> None:
    """nnU-Net v2 raw: two CT cases with labels from the v2 ``total`` map (117 classes)."""
    root = SAMPLES / "nnUNet_raw" / "Dataset001_TotalSegCT"
    ts = shared / TS
    _copy(ts / "example_ct.nii.gz", root / "imagesTr" / "s0001_0000.nii.gz")
    _copy(ts / "example_seg_fast_force_split.nii.gz", root / "labelsTr" / "s0001.nii.gz")
    _copy(ts / "example_ct_sm.nii.gz", root / "imagesTr" / "s0002_0000.nii.gz")
    _copy(ts / "example_seg.nii.gz", root / "labelsTr" / "s0002.nii.gz")
    total = json.loads((ts / "class_maps.json").read_text())["total"]
    labels = {"background": 0} | {name: int(value) for value, name in total.items()}
    _write_json(
        root / "dataset.json",
        {
            "channel_names": {"0": "CT"},
            "labels": labels,
            "numTraining": 2,
            "file_ending": ".nii.gz",
            "name": "TotalSegCT",
            "licence": "Apache-2.0",
            "description": "TotalSegmentator example CTs; labels are TotalSegmentator model output (pseudo ground truth)",
        },
    )
    _copy(ts / "LICENSE", root / "LICENSE")


def build_msd(shared: Path) -> None:
    """MSD task with a real two-channel 4D image (T2*, T2 of one subject) and a 2-class label."""
    root = SAMPLES / "msd" / "Task101_SpinalCordSCT"
    sct = shared / SCT
    t2s = load_nifti(sct / "t2s" / "t2s.nii.gz")
    t2 = load_nifti(sct / "t2" / "t2.nii.gz")
    # T2* voxel (i, j, k) -> T2 voxel coordinates, through scanner world coordinates.
    to_t2 = np.linalg.inv(t2.affine) @ t2s.affine
    t2_on_t2s = ndimage.affine_transform(
        np.asanyarray(t2.dataobj).astype(np.float32),
        to_t2[:3, :3],
        offset=to_t2[:3, 3],
        output_shape=t2s.shape,
        order=1,
        mode="constant",
        cval=0.0,
    )
    image = np.stack([np.asanyarray(t2s.dataobj).astype(np.float32), t2_on_t2s], axis=-1)
    save_nifti(make_image(image, t2s.affine, like=t2s), root / "imagesTr" / "sct_001.nii.gz")
    cord = np.asanyarray(load_nifti(sct / "t2s" / "t2s_seg.nii.gz").dataobj) > 0
    grey = np.asanyarray(load_nifti(sct / "t2s" / "t2s_gmseg_manual.nii.gz").dataobj) > 0
    label = np.zeros(t2s.shape, dtype=np.uint8)
    label[cord] = 1
    label[grey] = 2
    save_nifti(make_image(label, t2s.affine, like=t2s), root / "labelsTr" / "sct_001.nii.gz")
    _write_json(
        root / "dataset.json",
        {
            "name": "SpinalCordSCT",
            "description": "spinalcordtoolbox sct_testing_data subject, manual cord and grey-matter masks",
            "reference": "https://github.com/spinalcordtoolbox/sct_testing_data",
            "licence": "MIT",
            "tensorImageSize": "4D",
            "modality": {"0": "T2star", "1": "T2"},
            "labels": {
                "0": "background",
                "1": "spinal cord white matter",
                "2": "spinal cord grey matter",
            },
            "numTraining": 1,
            "numTest": 0,
            "training": [
                {"image": "./imagesTr/sct_001.nii.gz", "label": "./labelsTr/sct_001.nii.gz"}
            ],
            "test": [],
        },
    )
    _copy(sct / "LICENSE", root / "LICENSE")


def build_totalsegmentator(shared: Path) -> None:
    """TotalSegmentator subject folders with one binary file per class and a meta.csv split."""
    root = SAMPLES / "totalsegmentator"
    ts = shared / TS
    _copy(ts / "example_ct_sm.nii.gz", root / "s0001" / "ct.nii.gz")
    for mask in sorted((ts / "example_seg_fast").glob("*.nii.gz")):
        _copy(mask, root / "s0001" / "segmentations" / mask.name)
    _copy(ts / "aorta_crop" / "ct_cropped.nii.gz", root / "s0002" / "ct.nii.gz")
    for mask in sorted((ts / "aorta_crop" / "masks").glob("*.nii.gz")):
        _copy(mask, root / "s0002" / "segmentations" / mask.name)
    with open(root / "meta.csv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerows([["image_id", "split"], ["s0001", "train"], ["s0002", "val"]])
    _copy(ts / "LICENSE", root / "LICENSE")


def build_per_case(shared: Path) -> None:
    """KiTS-style and BraTS-style per-case folders."""
    kits = SAMPLES / "kits_style"
    ts = shared / TS
    _copy(ts / "example_mr_sm.nii.gz", kits / "case_00000" / "imaging.nii.gz")
    _copy(ts / "example_seg_mr.nii.gz", kits / "case_00000" / "segmentation.nii.gz")
    _copy(ts / "LICENSE", kits / "LICENSE")
    brats = SAMPLES / "brats_style"
    sct = shared / SCT
    _copy(sct / "t2" / "t2.nii.gz", brats / "sub-01" / "sub-01_t2.nii.gz")
    _copy(sct / "t2" / "t2_seg-manual_labeled.nii.gz", brats / "sub-01" / "sub-01_seg.nii.gz")
    _copy(sct / "LICENSE", brats / "LICENSE")


def build_paired(shared: Path) -> None:
    """AMOS-style imagesTr/labelsTr/imagesVa/labelsVa folders."""
    root = SAMPLES / "amos_style"
    sct = shared / SCT
    _copy(sct / "t2" / "t2.nii.gz", root / "imagesTr" / "sct_t2.nii.gz")
    _copy(sct / "t2" / "t2_seg-manual.nii.gz", root / "labelsTr" / "sct_t2.nii.gz")
    _copy(sct / "t2s" / "t2s.nii.gz", root / "imagesVa" / "sct_t2s.nii.gz")
    _copy(sct / "t2s" / "t2s_seg.nii.gz", root / "labelsVa" / "sct_t2s.nii.gz")
    _copy(sct / "LICENSE", root / "LICENSE")


def main(shared: Path) -> None:
    for build in (build_nnunet, build_msd, build_totalsegmentator, build_per_case, build_paired):
        build(shared)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLES.parents[1] / "shared" / "data")

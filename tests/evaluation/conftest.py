"""A small label tree and manifest built from the shipped real volumes (docs/manifest.md)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neurosam3d.data.schema import MANIFEST_SCHEMA
from neurosam3d.io.nifti import make_image, save_nifti, voxel_spacing

from .oracle import OracleLog, install_oracle

#: (dataset, case, modality, image, label map, {class: label value}, category per class)
TARGETS = [
    (
        "TotalSegSm",
        "ct_sm",
        "CT",
        "ct_sm",
        "ct_sm_seg",
        {"kidney_right": (2, "abdomen_thorax"), "liver": (5, "abdomen_thorax")},
    ),
    (
        "SctT2s",
        "t2s",
        "MR",
        "t2s",
        "t2s_seg",
        {"spinal_cord": (1, "nervous")},
    ),
]


def build_tree(real: dict[str, Path], root: Path) -> Path:
    """Write the label tree under ``root`` and return its manifest path."""
    rows = []
    for dataset, case, modality, image_rel, label_rel, classes in TARGETS:
        image_path = root / dataset / "imagesTs" / f"{case}.nii.gz"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real[image_rel], image_path)
        labels = nib.load(real[label_rel])
        label_map = np.asarray(labels.dataobj)
        for class_name, (value, category) in classes.items():
            mask = (label_map == value).astype(np.uint8)
            mask_rel = f"{dataset}/labelsTs/{class_name}/{case}.nii.gz"
            save_nifti(make_image(mask, labels.affine, like=labels), root / mask_rel)
            idx = np.argwhere(mask)
            spacing = voxel_spacing(labels)
            rows.append(
                {
                    "dataset": dataset,
                    "split": "Ts",
                    "case_id": case,
                    "class_name": class_name,
                    "label_value": value,
                    "modality": modality,
                    "channels": [modality],
                    "category": category,
                    "image_path": f"{dataset}/imagesTs/{case}.nii.gz",
                    "image_paths": [f"{dataset}/imagesTs/{case}.nii.gz"],
                    "mask_path": mask_rel,
                    "voxel_count": int(mask.sum()),
                    "volume_mm3": float(mask.sum() * np.prod(spacing)),
                    "bbox_min": idx.min(axis=0).tolist(),
                    "bbox_max": (idx.max(axis=0) + 1).tolist(),
                    "spacing": list(spacing),
                    "shape": list(mask.shape),
                    "mask_sha256": hashlib.sha256((root / mask_rel).read_bytes()).hexdigest(),
                    "licence": "test",
                    "source_image": image_rel,
                    "source_label": label_rel,
                }
            )
    manifest = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
    return manifest


@pytest.fixture(scope="session")
def eval_manifest(real, tmp_path_factory) -> Path:
    return build_tree(real, tmp_path_factory.mktemp("tree"))


@pytest.fixture
def oracle(monkeypatch) -> OracleLog:
    """A perfect stand-in predictor (see oracle.py); returns its call log."""
    return install_oracle(monkeypatch)

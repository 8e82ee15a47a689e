"""A small real label tree, manifest and training store built from the shipped TotalSegmentator CT.

Follows docs/manifest.md: one image, one binary uint8 mask per class, one manifest row per
(dataset, split, case, class), written here directly (as another tool following the contract
would), then the training store derived from it by ``neurosam3d.store.build.build_store`` (what
``neurosam3d store build`` runs). The same case is listed under ``Tr`` and ``Val`` (the samples
hold one CT with this 61-class label): enough to exercise training and validation plumbing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from neurosam3d.data.schema import MANIFEST_SCHEMA
from neurosam3d.io.nifti import load_nifti, make_image, save_nifti

#: samples/README.md: case s0001 is the shared example_ct with example_seg_fast_force_split
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "nnUNet_raw" / "Dataset001_TotalSegCT"
#: a few large, well-separated structures of the 61-class label (keeps the tests fast)
TEST_CLASSES = ("liver", "spleen", "kidney_left", "kidney_right", "stomach", "aorta")


def build_ct_tree(root: Path, classes: tuple[str, ...] | None, dataset: str = "TotalSegCT") -> Path:
    """Write the label tree under ``root``, ``root/manifest.parquet`` and the training store;
    return the manifest."""
    from neurosam3d.store.build import build_store

    labels = json.loads((SAMPLE / "dataset.json").read_text())["labels"]
    names = {str(v): k for k, v in labels.items()}
    image = load_nifti(SAMPLE / "imagesTr" / "s0001_0000.nii.gz")
    seg = np.asanyarray(load_nifti(SAMPLE / "labelsTr" / "s0001.nii.gz").dataobj)
    spacing = [float(x) for x in nib.affines.voxel_sizes(image.affine)]
    case = "s0001"
    image_rel = f"{dataset}/imagesTr/{case}.nii.gz"
    save_nifti(image, root / image_rel)
    rows = []
    for value in sorted(int(v) for v in np.unique(seg) if v):
        name = names[str(value)]
        if classes is not None and name not in classes:
            continue
        mask = (seg == value).astype(np.uint8)
        mask_rel = f"{dataset}/labelsTr/{name}/{case}.nii.gz"
        save_nifti(make_image(mask, image.affine), root / mask_rel)
        idx = np.argwhere(mask)
        for split in ("Tr", "Val"):
            rows.append(
                {
                    "dataset": dataset,
                    "split": split,
                    "case_id": case,
                    "class_name": name,
                    "label_value": value,
                    "modality": "CT",
                    "channels": ["CT"],
                    "category": "uncategorised",
                    "image_path": image_rel,
                    "image_paths": [image_rel],
                    "mask_path": mask_rel,
                    "voxel_count": int(mask.sum()),
                    "volume_mm3": float(mask.sum() * np.prod(spacing)),
                    "bbox_min": idx.min(0).tolist(),
                    "bbox_max": (idx.max(0) + 1).tolist(),
                    "spacing": spacing,
                    "shape": list(mask.shape),
                    # docs/manifest.md: the SHA-256 of the mask file's bytes
                    "mask_sha256": hashlib.sha256((root / mask_rel).read_bytes()).hexdigest(),
                    "licence": "Apache-2.0",
                    "source_image": "imagesTr/s0001_0000.nii.gz",
                    "source_label": "labelsTr/s0001.nii.gz",
                }
            )
    rows.sort(key=lambda r: (r["dataset"], r["split"], r["case_id"], r["class_name"]))
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    build_store(root)
    return path


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the training tests on one intra-op thread (restored afterwards): on a CPU shared with
    other jobs, OpenMP threads spin-waiting on each other make small ops 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ct_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of :data:`TEST_CLASSES` on the shipped CT (label-tree root = its folder)."""
    return build_ct_tree(tmp_path_factory.mktemp("ct_tree"), TEST_CLASSES)

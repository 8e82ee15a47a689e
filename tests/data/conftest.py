"""Small raw datasets built from the shipped real samples (samples/README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from neurosam3d.io.nifti import load_nifti, make_image, save_nifti


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def write_nnunet(root: Path, labels: dict[str, int], channel: str = "MR") -> Path:
    """An empty nnU-Net v2 raw dataset folder with its dataset.json."""
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    doc = {
        "channel_names": {"0": channel},
        "labels": {"background": 0, **labels},
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def add_case(root: Path, case_id: str, image: Path | bytes, label: Path | bytes | None) -> None:
    """Put an image (and label) into an nnU-Net dataset, from a file or raw bytes."""
    for src, dst in (
        (image, root / "imagesTr" / f"{case_id}_0000.nii.gz"),
        (label, root / "labelsTr" / f"{case_id}.nii.gz"),
    ):
        if isinstance(src, Path):
            shutil.copyfile(src, dst)
        elif src is not None:
            dst.write_bytes(src)


def save_array(path: Path, data: np.ndarray, like: Path) -> Path:
    """Save ``data`` on the grid of the NIfTI file ``like``."""
    reference = load_nifti(like)
    save_nifti(make_image(data, reference.affine, like=reference), path)
    return path


@pytest.fixture(scope="session")
def t2s(samples_dir: Path) -> tuple[Path, Path]:
    """Real T2* MR (49x54x9, 0.5x0.5x7.5 mm, float32) and its manual cord mask (uint8 0/1)."""
    return (
        samples_dir / "amos_style" / "imagesVa" / "sct_t2s.nii.gz",
        samples_dir / "amos_style" / "labelsVa" / "sct_t2s.nii.gz",
    )


@pytest.fixture(scope="session")
def ct_small(samples_dir: Path) -> tuple[Path, Path]:
    """Real CT (122x101x30, 3 mm, int16) and its 41-class TotalSegmentator label (uint8)."""
    root = samples_dir / "nnUNet_raw" / "Dataset001_TotalSegCT"
    return root / "imagesTr" / "s0002_0000.nii.gz", root / "labelsTr" / "s0002.nii.gz"


@pytest.fixture(scope="session")
def total_labels(samples_dir: Path) -> dict[str, int]:
    """The TotalSegmentator v2 ``total`` map (name -> value) of the nnU-Net sample."""
    doc = json.loads(
        (samples_dir / "nnUNet_raw" / "Dataset001_TotalSegCT" / "dataset.json").read_text()
    )
    return {k: v for k, v in doc["labels"].items() if k != "background"}

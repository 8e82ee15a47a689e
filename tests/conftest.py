"""Shared test fixtures: the real sample volumes shipped in ``samples/``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The shipped raw sample datasets, in their public layouts (see samples/README.md).
SAMPLES = REPO / "samples"
_NNUNET = SAMPLES / "nnUNet_raw" / "Dataset001_TotalSegCT"

#: Real volumes by name: byte-for-byte copies of the project's shared sample data that ship in
#: ``samples/`` (samples/README.md says where each comes from), so the tests need nothing outside the checkout.
REAL_VOLUMES: dict[str, Path] = {
    # TotalSegmentator examples (Apache-2.0); labels are model output (pseudo ground truth)
    "ct": _NNUNET / "imagesTr" / "s0001_0000.nii.gz",  # example_ct: 3 mm, RAS
    "ct_seg": _NNUNET / "labelsTr" / "s0001.nii.gz",  # example_seg_fast_force_split: 61 classes
    "ct_sm": _NNUNET / "imagesTr" / "s0002_0000.nii.gz",  # example_ct_sm
    "ct_sm_seg": _NNUNET / "labelsTr" / "s0002.nii.gz",  # example_seg: 41 classes
    "mr_sm": SAMPLES / "kits_style" / "case_00000" / "imaging.nii.gz",  # example_mr_sm: LPS
    "mr_seg": SAMPLES / "kits_style" / "case_00000" / "segmentation.nii.gz",  # example_seg_mr
    # spinalcordtoolbox testing data (MIT); manual labels
    "t2": SAMPLES / "amos_style" / "imagesTr" / "sct_t2.nii.gz",  # 1 mm, PSR
    "t2_seg": SAMPLES / "amos_style" / "labelsTr" / "sct_t2.nii.gz",  # spinal cord
    "t2s": SAMPLES / "amos_style" / "imagesVa" / "sct_t2s.nii.gz",  # 0.5 x 0.5 x 7.5 mm, LAS
    "t2s_seg": SAMPLES / "amos_style" / "labelsVa" / "sct_t2s.nii.gz",  # spinal cord
    # on the T2* grid: 1 = white matter (cord minus grey matter), 2 = grey matter (manual)
    "t2s_wm_gm": SAMPLES / "msd" / "Task101_SpinalCordSCT" / "labelsTr" / "sct_001.nii.gz",
}


def total_class_names() -> dict[int, str]:
    """Label value -> class name of the TotalSegmentator ``total`` map (the nnU-Net sample's
    ``dataset.json``)."""
    labels = json.loads((_NNUNET / "dataset.json").read_text())["labels"]
    return {int(value): name for name, value in labels.items()}


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def real() -> dict[str, Path]:
    """:data:`REAL_VOLUMES`, checked to exist (they are part of the repository)."""
    missing = [str(p) for p in REAL_VOLUMES.values() if not p.is_file()]
    assert not missing, f"shipped sample volumes missing from the checkout: {missing}"
    return REAL_VOLUMES


@pytest.fixture(autouse=True, scope="session")
def wide_console() -> Iterator[None]:
    """A fixed, wide console for every CLI run in the tests: rich (typer's error panels) wraps at
    ``COLUMNS`` (80 when unset), so a message naming a long temporary path would otherwise be
    split across lines depending on where the checkout lives."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "1000"
    yield
    if old is None:
        os.environ.pop("COLUMNS", None)
    else:
        os.environ["COLUMNS"] = old

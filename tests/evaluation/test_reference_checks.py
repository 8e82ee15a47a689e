"""Evaluation checks each reference mask where it is scored: its bytes against the manifest's
``mask_sha256`` and its grid against its image, so a shifted or swapped mask is never scored."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from neurosam3d.data.schema import MANIFEST_SCHEMA
from neurosam3d.evaluation import evaluate
from neurosam3d.evaluation.api import ManifestError
from neurosam3d.model import build_model


@pytest.fixture()
def tree(eval_manifest: Path, tmp_path: Path) -> Path:
    """A private copy of the evaluation tree (the session tree stays intact)."""
    copy = tmp_path / "tree"
    shutil.copytree(eval_manifest.parent, copy)
    return copy / eval_manifest.name


def _only_cord(manifest: Path) -> tuple[Path, dict]:
    """Keep the spinal-cord row (smallest target); return the manifest and that row."""
    rows = [r for r in pq.read_table(manifest).to_pylist() if r["class_name"] == "spinal_cord"]
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
    return manifest, rows[0]


def _evaluate(manifest: Path, out: Path) -> None:
    torch.manual_seed(0)
    evaluate(build_model("tiny").eval(), [manifest], out, clicks=1, seed=0, model_name="tiny")


def test_a_mask_shifted_by_60_mm_is_refused_even_with_a_matching_hash(tree: Path, tmp_path) -> None:
    manifest, row = _only_cord(tree)
    path = manifest.parent / row["mask_path"]
    mask = nib.load(path)
    shifted = mask.affine.copy()
    shifted[0, 3] += 60.0
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), shifted), path)
    row["mask_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()  # a consistent manifest
    pq.write_table(pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA), manifest)
    with pytest.raises(ManifestError, match=r"mask affine differs from its image's by up to 60"):
        _evaluate(manifest, tmp_path / "out")


def test_a_mask_whose_bytes_differ_from_the_manifest_is_refused(tree: Path, tmp_path) -> None:
    manifest, row = _only_cord(tree)
    path = manifest.parent / row["mask_path"]
    mask = nib.load(path)
    data = np.asarray(mask.dataobj).copy()
    data[data.shape[0] // 2, :, :] = 0  # a silently edited reference
    nib.save(nib.Nifti1Image(data, mask.affine), path)
    with pytest.raises(ManifestError) as err:
        _evaluate(manifest, tmp_path / "out")
    assert "is not the mask_sha256" in str(err.value) and str(path) in str(err.value)
    assert "SctT2s/Ts/t2s/spinal_cord" in str(err.value)

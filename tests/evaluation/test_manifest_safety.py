"""Manifest rows that cannot be used: unsafe names or paths (rejected before anything runs) and
multi-channel images (a clear error naming the file)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from neurosam3d.data.schema import MANIFEST_SCHEMA
from neurosam3d.evaluation import evaluate
from neurosam3d.evaluation.api import read_manifests
from neurosam3d.model import build_model


def _tampered(eval_manifest: Path, folder: Path, row: int, **values: str) -> Path:
    rows = pq.read_table(eval_manifest).to_pylist()
    rows[row].update(values)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evil.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), path)
    return path


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dataset": "../../../pwned"}, r"dataset '\.\./\.\./\.\./pwned' is not a safe"),
        ({"case_id": "../x"}, r"case_id '\.\./x' is not a safe"),
        ({"class_name": "a/b"}, r"class_name 'a/b' is not a safe"),
        ({"image_path": "../../../etc/x.nii.gz"}, r"image_path: .*leads outside"),
        ({"mask_path": "/etc/passwd"}, r"mask_path: .*is absolute"),
    ],
)
def test_malicious_manifest_is_rejected_naming_file_and_row(
    eval_manifest: Path, tmp_path: Path, values: dict, message: str
) -> None:
    evil = _tampered(eval_manifest, tmp_path / "data", 1, **values)
    with pytest.raises(ValueError, match=rf"evil\.parquet: row 1: {message}"):
        read_manifests([evil])
    torch.manual_seed(0)
    out = tmp_path / "a" / "b" / "c" / "out"
    with pytest.raises(ValueError, match=message):
        evaluate(build_model("tiny").eval(), [evil], out, clicks=1, data_root=eval_manifest.parent)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "evil.parquet"]


def test_cli_names_the_manifest_and_row(eval_manifest: Path, tmp_path: Path) -> None:
    from neurosam3d.cli import app

    evil = _tampered(eval_manifest, tmp_path, 0, dataset="../../../pwned")
    checkpoint = tmp_path / "tiny.pt"
    torch.save(build_model("tiny").state_dict(), checkpoint)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--arch", "tiny", "--manifest", str(evil)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "row 0" in result.output and "pwned" in result.output
    assert not (tmp_path / "out").exists()


def test_multichannel_image_in_a_manifest_is_a_clear_error(eval_manifest: Path, tmp_path):
    import shutil

    import nibabel as nib
    import numpy as np

    row = pq.read_table(eval_manifest).to_pylist()[0]
    source = eval_manifest.parent
    image = nib.load(source / row["image_path"])
    four_d = np.stack([np.asarray(image.dataobj)] * 2, axis=-1)
    (tmp_path / row["image_path"]).parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(four_d, image.affine), tmp_path / row["image_path"])
    (tmp_path / row["mask_path"]).parent.mkdir(parents=True)
    shutil.copyfile(source / row["mask_path"], tmp_path / row["mask_path"])
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA), manifest)
    shape = re.escape(str((*image.shape, 2)))
    with pytest.raises(ValueError, match=rf"{row['case_id']}\.nii\.gz: image has shape {shape}"):
        evaluate(build_model("tiny").eval(), [manifest], tmp_path / "out", clicks=1)

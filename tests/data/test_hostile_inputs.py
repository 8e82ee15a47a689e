"""Hostile and broken inputs, and a failing output side: bounded memory, honest exit codes,
messages instead of tracebacks. Every file is built here from the real T2* sample."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neurosam3d.cli import app
from neurosam3d.data.casework import run_case
from neurosam3d.data.config import config_for_layout
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.io.nifti import NiftiError, ReadLimits, load_nifti
from tests.data.conftest import add_case, files_under, write_nnunet

runner = CliRunner()


def bomb_header(shape: tuple[int, ...], dtype: type = np.int16) -> bytes:
    """A gzip-compressed NIfTI header claiming ``shape`` voxels, followed by a few bytes only."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    return gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 64, mtime=0)


def prepare_args(raw: Path, out: Path, workers: int) -> list[str]:
    """``neurosam3d prepare`` of the nnU-Net dataset ``raw`` into ``out``."""
    where = ["--root", str(raw), "--out", str(out), "--workers", str(workers)]
    return ["prepare", "--layout", "nnunet", *where]


def quarantine(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "quarantine.parquet")


def run_limited(args: list[str], *, address_space: int | None = None, file_size: int | None = None):
    """``neurosam3d ARGS`` in a fresh process under resource limits (bytes)."""
    code = (
        "import resource, signal, sys\n"
        f"if {address_space!r}: resource.setrlimit(resource.RLIMIT_AS, ({address_space!r},) * 2)\n"
        f"if {file_size!r}:\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)\n"
        f"    resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size!r},) * 2)\n"
        "from neurosam3d.cli import main\n"
        f"sys.argv = ['neurosam3d', *{args!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture()
def raw(tmp_path: Path, t2s: tuple[Path, Path]) -> Path:
    root = write_nnunet(tmp_path / "raw" / "Dataset901_Hostile", {"spinal_cord": 1})
    add_case(root, "good", *t2s)
    return root


def test_memory_bomb_header_is_refused_before_allocating(raw: Path, tmp_path: Path, t2s) -> None:
    # 100 bytes claiming 1000^3 int16 voxels (2 GB, within the default read limits): under a
    # 2 GiB address-space limit the run must finish, the bomb quarantined, the good case kept;
    # 1500^3 is above the voxel limit itself.
    add_case(raw, "bomb", bomb_header((1000, 1000, 1000)), t2s[1])
    add_case(raw, "huge", bomb_header((1500, 1500, 1500)), t2s[1])
    out = tmp_path / "out"
    args = prepare_args(raw, out, workers=2)
    done = run_limited(args, address_space=2 * 1024**3)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = quarantine(out)
    bomb = rows[rows.case_id == "bomb"].iloc[0]
    assert bomb.kind == "truncated_gzip" and "1000x1000x1000" in bomb.problem
    assert bomb.path == "imagesTr/bomb_0000.nii.gz" and "the data is missing" in bomb.problem
    huge = rows[rows.case_id == "huge"].iloc[0]
    assert huge.kind == "too_large" and "limit of 1,073,741,824 voxels" in huge.problem
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest.case_id) == {"good"}


def test_images_above_the_read_limits_are_quarantined_naming_claim_and_limit(
    raw: Path, tmp_path: Path, t2s, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEUROSAM3D_MAX_VOXELS", "20000")  # the T2* has 49 x 54 x 9 = 23,814
    report = prepare_dataset(config_for_layout("nnunet", raw), tmp_path / "out", workers=1)
    (problem,) = report.problems
    assert problem.kind == "too_large" and problem.case_id == "good"
    assert "49x54x9 voxels" in problem.problem and "20,000 voxels" in problem.problem


def test_reads_stop_at_the_claimed_size(tmp_path: Path, t2s) -> None:
    # A valid image followed by 50 MB of zeros inside the same gzip stream: only the claim is
    # decompressed, and a limit just above the image still admits it.
    image = nib.load(t2s[0])
    raw = gzip.decompress(t2s[0].read_bytes()) + b"\0" * 50_000_000
    path = tmp_path / "padded.nii.gz"
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    limits = ReadLimits(max_voxels=49 * 54 * 9, max_bytes=49 * 54 * 9 * 4)
    loaded = load_nifti(path, limits=limits)
    assert np.array_equal(np.asanyarray(loaded.dataobj), np.asanyarray(image.dataobj))


def test_uncompressed_file_shorter_than_its_claim_is_truncated(tmp_path: Path, t2s) -> None:
    raw = gzip.decompress(t2s[0].read_bytes())
    path = tmp_path / "short.nii"
    path.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(NiftiError) as err:
        load_nifti(path)
    assert err.value.reason == "truncated" and "the file has only" in err.value.problem


def test_scaled_and_big_endian_images_decode_as_nibabel_does(tmp_path: Path, t2s) -> None:
    data = np.asanyarray(nib.load(t2s[0]).dataobj).astype(">i2")
    image = nib.Nifti1Image(data, nib.load(t2s[0]).affine)
    image.header.set_slope_inter(0.5, -3.0)
    path = tmp_path / "scaled.nii"
    nib.save(image, path)
    ours, theirs = load_nifti(path), nib.load(path)
    assert np.array_equal(np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj))
    assert np.allclose(ours.affine, theirs.affine)


def killed_on_victim(spec, *args):
    """``run_case``, except that the worker is killed (SIGKILL) on the case ``victim``."""
    if spec.case_id == "victim":
        os.kill(os.getpid(), signal.SIGKILL)
    return run_case(spec, *args)


def test_a_worker_that_dies_becomes_a_quarantine_row(
    raw: Path, tmp_path: Path, t2s, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The OOM killer's SIGKILL, delivered to the worker preparing case "victim".
    import neurosam3d.data.prepare as prepare_module

    monkeypatch.setattr(prepare_module, "run_case", killed_on_victim)
    for case in ("victim", "other1", "other2"):
        add_case(raw, case, *t2s)
    report = prepare_dataset(config_for_layout("nnunet", raw), tmp_path / "out", workers=2)
    assert [(p.case_id, p.kind) for p in report.problems] == [("victim", "worker_died")]
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert set(manifest.case_id) == {"good", "other1", "other2"}


def test_disk_full_stops_with_exit_1_naming_the_output_and_a_rerun_completes(
    raw: Path, tmp_path: Path, ct_small
) -> None:
    add_case(raw, "large", *ct_small)  # its masks and image are larger than the file limit
    out = tmp_path / "out"
    args = prepare_args(raw, out, workers=1)
    full = run_limited(args, file_size=150_000)
    assert full.returncode == 1, full.stderr[-3000:]
    assert "cannot write" in full.stderr and str(out) in full.stderr
    assert "Traceback" not in full.stderr
    assert not (out / "quarantine.parquet").exists() or quarantine(out).empty  # nothing blamed
    assert not list(out.rglob("*.tmp-*")), "no temporary files left behind"
    # With space again, the rerun finishes and gives the bytes of a clean run.
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    clean = tmp_path / "clean"
    assert runner.invoke(app, prepare_args(raw, clean, workers=1)).exit_code == 0
    assert files_under(out) == files_under(clean)


def test_unwritable_output_is_exit_1_not_a_traceback(raw: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(
        app, ["prepare", "--layout", "nnunet", "--root", str(raw), "--out", str(blocker / "out")]
    )
    assert result.exit_code == 1
    assert "cannot write" in result.output and str(blocker / "out") in result.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["background", "spinal_cord"]}, "'labels' must be an object"),
        ({"labels": None}, "'labels' must be an object"),
        ({"channel_names": {"zero": "MR"}}, "'channel_names' key 'zero' is not an integer"),
        ({"channel_names": {"0": None}}, "'channel_names' entry '0' must be a name"),
        (
            {"labels": {"background": 0, "cord": 1, "spine": 1}},
            "'cord' and 'spine' both map to value 1",
        ),
        ({"labels": {"background": 0, "cord": 2**40}}, "outside 0..2147483647"),
    ],
)
def test_malformed_dataset_json_is_exit_2_naming_file_and_key(
    raw: Path, tmp_path: Path, change: dict, message: str
) -> None:
    path = raw / "dataset.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, **change}))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["prepare", "--layout", "nnunet", "--root", str(raw), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert message in result.output and str(path) in result.output
    assert not (out / "manifest.parquet").exists()


def test_symlinks_leading_outside_the_root_are_refused_unless_allowed(
    raw: Path, tmp_path: Path, t2s
) -> None:
    outside = tmp_path / "elsewhere.nii.gz"
    outside.write_bytes(t2s[0].read_bytes())
    (raw / "imagesTr" / "linked_0000.nii.gz").symlink_to(outside)
    (raw / "labelsTr" / "linked.nii.gz").write_bytes(t2s[1].read_bytes())
    config = config_for_layout("nnunet", raw)
    report = prepare_dataset(config, tmp_path / "out", workers=1)
    (problem,) = report.problems
    assert problem.kind == "outside_root" and problem.path == "imagesTr/linked_0000.nii.gz"
    assert str(outside) in problem.problem
    allowed = prepare_dataset(
        config_for_layout("nnunet", raw, allow_outside_root=True), tmp_path / "out2", workers=1
    )
    assert not allowed.problems and allowed.prepared == 2


def test_refused_checkpoint_is_a_message_with_exit_2_and_debug_shows_the_traceback(
    tmp_path: Path, t2s
) -> None:
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x80\x02not really a checkpoint" * 10)
    args = ["predict", str(t2s[0]), "--checkpoint", str(bad), "--point", "24,27,4,+"]
    args += ["--out", str(tmp_path / "m.nii.gz")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "broken.pth" in result.output and "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", *args], env={"NEUROSAM3D_DEBUG": ""})
    assert debug.exit_code == 1 and debug.exception is not None  # raised, not turned into a message
    os.environ.pop("NEUROSAM3D_DEBUG", None)


def _rotated(affine: np.ndarray, degrees: float) -> np.ndarray:
    """``affine`` rotated about the world z axis through the volume's origin."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    rotation = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    return rotation @ affine


def test_a_label_rotated_against_its_image_is_refused_unless_resampling_is_allowed(
    raw: Path, tmp_path: Path, t2s
) -> None:
    label = nib.load(t2s[1])
    rotated = nib.Nifti1Image(np.asanyarray(label.dataobj), _rotated(label.affine, 5.0))
    nib.save(rotated, raw / "labelsTr" / "tilted.nii.gz")
    (raw / "imagesTr" / "tilted_0000.nii.gz").write_bytes(t2s[0].read_bytes())
    report = prepare_dataset(config_for_layout("nnunet", raw), tmp_path / "out", workers=1)
    (problem,) = report.problems
    assert problem.kind == "grid_mismatch" and problem.path == "labelsTr/tilted.nii.gz"
    assert "rotated or sheared by 5.00 degrees" in problem.problem
    allowed = config_for_layout("nnunet", raw, allow_label_resampling=True)
    report = prepare_dataset(allowed, tmp_path / "out2", workers=1)
    assert not report.problems and report.prepared == 2


@pytest.mark.parametrize("ending", [".mha", ".nrrd", ".nii"])
def test_nnunet_datasets_in_other_file_formats_prepare_like_nifti(
    tmp_path: Path, t2s, ct_small, ending: str
) -> None:
    import SimpleITK as sitk

    def convert(root: Path, ending: str) -> Path:
        doc = json.loads((root / "dataset.json").read_text())
        out = tmp_path / f"{root.name}{ending.replace('.', '_')}" / root.name
        (out / "imagesTr").mkdir(parents=True)
        (out / "labelsTr").mkdir()
        (out / "dataset.json").write_text(json.dumps({**doc, "file_ending": ending}))
        for src in sorted(root.glob("*Tr/*.nii.gz")):
            dst = out / src.parent.name / src.name.replace(".nii.gz", ending)
            sitk.WriteImage(sitk.ReadImage(str(src)), str(dst))  # ITK's own NIfTI -> LPS
        return out

    nifti = write_nnunet(tmp_path / "nifti" / "Dataset902_Formats", {"spinal_cord": 1, "liver": 5})
    add_case(nifti, "t2s", *t2s)  # LAS, 0.5 x 0.5 x 7.5 mm, float32
    add_case(nifti, "ct", *ct_small)  # RAS, 3 mm, int16
    other = convert(nifti, ending)
    ours = prepare_dataset(config_for_layout("nnunet", other), tmp_path / "a", workers=1)
    reference = prepare_dataset(config_for_layout("nnunet", nifti), tmp_path / "b", workers=1)

    def reports(problems):  # the same problems, on files of another suffix
        return [(p.case_id, p.kind, p.problem, p.path.split(".")[0]) for p in problems]

    assert reports(ours.problems) == reports(reference.problems)
    assert ours.rows == reference.rows > 0
    a, b = tmp_path / "a" / "Dataset902_Formats", tmp_path / "b" / "Dataset902_Formats"
    written = sorted(p.relative_to(b) for p in b.rglob("*.nii.gz"))
    assert written == sorted(p.relative_to(a) for p in a.rglob("*.nii.gz"))
    for rel in written:
        x, y = nib.load(a / rel), nib.load(b / rel)
        assert np.array_equal(np.asanyarray(x.dataobj), np.asanyarray(y.dataobj)), rel
        assert np.allclose(x.affine, y.affine, atol=1e-4), rel


def test_predict_refuses_a_singular_affine_and_nan_clicks_before_segmenting(
    tmp_path: Path, t2s
) -> None:
    import torch

    from neurosam3d.model import build_model, save_safetensors

    torch.manual_seed(0)
    checkpoint = save_safetensors(build_model("tiny"), tmp_path / "tiny.safetensors")
    image = nib.load(t2s[0])
    flat = image.affine.copy()
    flat[:, 2] = 0  # every slice at one world position
    singular = tmp_path / "singular.nii.gz"
    broken = nib.Nifti1Image(np.asanyarray(image.dataobj), None)
    broken.set_sform(flat, code=1)  # as a broken converter writes it (the qform stays unset)
    nib.save(broken, singular)
    base = ["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.nii.gz")]
    refused = runner.invoke(app, [*base, str(singular), "--point", "24,27,4,+"])
    assert refused.exit_code == 2 and "singular or non-finite affine" in refused.output
    assert str(singular) in refused.output
    nan = runner.invoke(app, [*base, str(t2s[0]), "--point", "24,nan,4,+"])
    assert nan.exit_code == 2 and "'24,nan,4'" in nan.output and "finite" in nan.output
    assert not (tmp_path / "m.nii.gz").exists()


def test_a_checkpoint_full_of_nans_is_refused_at_load(tmp_path: Path) -> None:
    import torch

    from neurosam3d.model import CheckpointError, build_model, load_checkpoint, save_safetensors

    model = build_model("tiny")
    with torch.no_grad():
        model.mask_decoder.iou_prediction_head.layers[0].weight.fill_(float("nan"))
    path = save_safetensors(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values \(mask_decoder\.iou"):
        load_checkpoint(path)


def test_a_manifest_that_is_not_parquet_is_exit_2_naming_it(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.parquet"
    manifest.write_text("not parquet")
    args = ["train", "--config", "configs/demo-cpu.yaml", "--out", str(tmp_path / "train")]
    args += [
        "--set",
        f"data.train_manifests=[{manifest}]",
        "--set",
        f"data.val_manifests=[{manifest}]",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and str(manifest) in result.output
    assert "Traceback" not in result.output

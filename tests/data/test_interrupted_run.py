"""A ``neurosam3d prepare`` process killed with SIGKILL half-way, then rerun, leaves exactly the
bytes of an uninterrupted run and no temporary or partial files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurosam3d.io.atomic import TMP_MARKER
from tests.data.conftest import add_case, files_under, write_nnunet

CASES = [f"case{i}" for i in range(6)]


def _prepare(root: Path, out: Path, workers: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from neurosam3d.cli import main; main()", "prepare"]
    command += ["--layout", "nnunet"]
    command += ["--root", str(root), "--out", str(out), "--workers", str(workers)]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _kill_mid_case(process: subprocess.Popen[bytes], out: Path, dataset: str) -> None:
    """SIGKILL the run's process group once a case has masks but no record yet (mid-case)."""
    records = out / ".prepare" / dataset
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        done = {p.name.removesuffix(".json.gz") for p in records.glob("*.json.gz")}
        started = {p.stem.removesuffix(".nii") for p in out.glob(f"{dataset}/labelsTr/*/*.nii.gz")}
        if len(done) >= 2 and started - done:
            break
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_sigkill_then_rerun_is_byte_identical(tmp_path: Path, ct_small, total_labels) -> None:
    image, label = ct_small
    root = write_nnunet(tmp_path / "Dataset910_Kill", total_labels, channel="CT")
    for case_id in CASES:
        add_case(root, case_id, image, label)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    _kill_mid_case(_prepare(root, killed, workers=2), killed, root.name)
    assert not (killed / "manifest.parquet").exists(), "the run finished before it was killed"
    assert _prepare(root, killed, workers=2).wait(timeout=120) == 0
    assert _prepare(root, clean, workers=1).wait(timeout=120) == 0
    assert not [p for p in killed.rglob("*") if TMP_MARKER in p.name]
    assert files_under(killed) == files_under(clean)
    assert len(list(clean.glob(f"{root.name}/labelsTr/*/*.nii.gz"))) == 41 * len(CASES)

"""A teammate's fresh clone gets a commit's outputs with ``dvc pull``, and ``dvc status`` is clean."""

import subprocess
from pathlib import Path

import yaml

from neurosam3d.demo import sync_samples
from tests.pipelines.conftest import REPO, SMALL_DATASET, make_project

DVC = str(REPO / ".venv" / "bin" / "dvc")


def _run(*args: str, cwd: Path) -> str:
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    command = [*git, *args[1:]] if args[0] == "git" else [DVC, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_fresh_clone_pulls_the_committed_outputs_and_is_up_to_date(tmp_path: Path) -> None:
    origin = make_project(tmp_path / "origin")
    sync_samples(origin / "samples", origin / "data")
    _run("add", "--quiet", "data", cwd=origin)
    _run("repro", "--quiet", "combine", cwd=origin)  # prepare@<dataset>, then combine
    _run("remote", "add", "--force", "--default", "team", str(tmp_path / "remote"), cwd=origin)
    _run("push", "--quiet", cwd=origin)
    lock = yaml.safe_load((origin / "dvc.lock").read_text())["stages"]
    assert {f"prepare@{SMALL_DATASET}", "combine"} <= set(lock)
    _run("git", "add", "-A", cwd=origin)
    _run("git", "commit", "--quiet", "-m", "pipeline outputs", cwd=origin)
    assert "dvc.lock" in _run("git", "ls-files", cwd=origin).split()

    clone = tmp_path / "clone"
    _run("git", "clone", "--quiet", str(origin), str(clone), cwd=tmp_path)
    assert not (clone / "work").exists()
    # (the stages after combine never ran in origin: its dvc.lock has nothing of them)
    _run("pull", "--quiet", "--with-deps", "combine", cwd=clone)
    assert "Data and pipelines are up to date." in _run(
        "status", "--with-deps", "combine", cwd=clone
    )
    for name in ("manifest.parquet", "manifests/SCTPaired_Val.parquet"):
        assert (clone / "work" / "data" / name).read_bytes() == (
            origin / "work" / "data" / name
        ).read_bytes()
    tree = Path("work/data/datasets") / SMALL_DATASET / "SCTPaired" / "labelsTr" / "spinal_cord"
    assert sorted(p.name for p in (clone / tree).iterdir()) == ["sct_t2.nii.gz"]

"""MLflow tracking URI resolution, experiment artifact location, DVC and git tags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from neurosam3d import tracking


def test_default_is_sqlite_under_the_project_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("NEUROSAM3D_HOME", str(tmp_path))
    uri = tracking.resolve_tracking_uri()
    assert uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert uri.startswith("sqlite:////")  # absolute path
    assert (tmp_path / "mlflow").is_dir()


def test_explicit_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.resolve_tracking_uri() == "http://tracking.example:5000"
    assert tracking.resolve_tracking_uri("http://other:5000") == "http://other:5000"


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "mlruns"])
def test_file_store_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="file store"):
        tracking.resolve_tracking_uri(uri)


def test_new_experiment_keeps_artifacts_under_the_project(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("NEUROSAM3D_HOME", str(tmp_path))
    uri = tracking.resolve_tracking_uri(tracking.default_tracking_uri())
    first = tracking.get_or_create_experiment("exp", uri)
    assert tracking.get_or_create_experiment("exp", uri) == first
    location = MlflowClient(uri).get_experiment(first).artifact_location
    assert location == (tmp_path / "mlflow" / "artifacts").as_uri()


def test_dvc_hash_of_the_output_holding_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  manifest:\n    cmd: x\n    outs:\n"
        "    - path: work/data\n      md5: abc123.dir\n"
    )
    inside = str(tmp_path / "work/data/manifest.parquet")
    assert tracking.dvc_hash([inside], project=tmp_path) == "abc123.dir"
    assert tracking.dvc_hash([str(tmp_path / "elsewhere.parquet")], project=tmp_path) is None


def test_git_commit_marks_dirty_trees(tmp_path: Path) -> None:
    assert tracking.git_commit(tmp_path) is None
    run = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "add", "f"], **run)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m"], **run
    )
    clean = tracking.git_commit(tmp_path)
    assert clean is not None and len(clean) == 40
    (tmp_path / "f").write_text("2")
    assert tracking.git_commit(tmp_path) == f"{clean}-dirty"

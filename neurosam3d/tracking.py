"""Where MLflow runs go: tracking URI, artifact root, experiments and run tags.

Resolution order for the tracking URI: an explicit value (configuration or CLI) wins, then the
``MLFLOW_TRACKING_URI`` environment variable, then the embedded default
``sqlite:///<project>/mlflow/mlflow.db`` with artifacts under ``<project>/mlflow/artifacts``.
MLflow's plain file store is never used (it is deprecated and refuses to start without
``MLFLOW_ALLOW_FILE_STORE``). The project directory is ``$NEUROSAM3D_HOME`` when set, else the
current working directory.

MLflow is imported inside the functions: importing it costs about 2 s.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

HOME_ENV = "NEUROSAM3D_HOME"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def project_dir() -> Path:
    """Absolute project directory: ``$NEUROSAM3D_HOME`` or the current working directory."""
    return Path(os.environ.get(HOME_ENV) or Path.cwd()).expanduser().resolve()


def default_tracking_uri(project: Path | None = None) -> str:
    """``sqlite:///<abs project>/mlflow/mlflow.db`` (four slashes before an absolute path)."""
    db = (project or project_dir()) / "mlflow" / "mlflow.db"
    return f"sqlite:///{db.as_posix()}"


def default_artifact_root(project: Path | None = None) -> Path:
    """``<abs project>/mlflow/artifacts``: where runs of the embedded store keep their files."""
    return (project or project_dir()) / "mlflow" / "artifacts"


def resolve_tracking_uri(configured: str | None = None) -> str:
    """The tracking URI to use: ``configured``, else ``$MLFLOW_TRACKING_URI``, else the default.

    A ``file:`` URI or a bare path (MLflow's file store) is rejected with a ``ValueError``.
    """
    uri = configured or os.environ.get(TRACKING_URI_ENV) or default_tracking_uri()
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r} points at MLflow's deprecated file store; use "
            f"sqlite:///ABSOLUTE/PATH/mlflow.db or an http(s):// tracking server"
        )
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def get_or_create_experiment(name: str, tracking_uri: str) -> str:
    """Id of experiment ``name`` at ``tracking_uri``, created when missing.

    A new experiment on a local SQLite store keeps its artifacts under
    :func:`default_artifact_root` (MLflow would otherwise use ``./mlruns`` of whatever directory
    the process runs in); a server decides its own artifact location.
    """
    client = _client(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:"):
        root = default_artifact_root()
        root.mkdir(parents=True, exist_ok=True)
        location = root.as_uri()
    experiment_id = client.create_experiment(name, artifact_location=location)
    logger.info("created MLflow experiment %r (%s) at %s", name, experiment_id, tracking_uri)
    return experiment_id


def git_commit(path: Path | None = None) -> str | None:
    """``HEAD`` commit of the git work tree containing ``path`` (default: the project dir).

    A ``-dirty`` suffix marks uncommitted changes to tracked files; ``None`` outside git.
    """
    cwd = path or project_dir()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def dvc_hash(paths: list[str] | tuple[str, ...], project: Path | None = None) -> str | None:
    """DVC's recorded hash of the output that holds ``paths``, from ``<project>/dvc.lock``.

    The first path inside a DVC stage output (the file itself or a folder above it) decides;
    ``None`` when there is no ``dvc.lock`` or no output holds the paths.
    """
    import yaml

    root = project or project_dir()
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    outs = [o for stage in stages.values() for o in stage.get("outs", [])]
    for path in paths:
        target = Path(path).resolve()
        for out in outs:
            out_path = (root / out["path"]).resolve()
            if target == out_path or out_path in target.parents:
                return out.get("md5") or out.get("hash")
    return None


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)

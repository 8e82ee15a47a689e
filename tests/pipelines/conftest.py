"""A throw-away project folder: the pipeline files of this repository, one small raw dataset."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
#: The smallest shipped sample with a held-out split: two real spinal-cord MRs (AMOS layout).
SMALL_DATASET = "sample_amos_style_cord"
SMALL_RAW = "amos_style"


def whole(dataset: str, raw: str) -> dict[str, dict[str, str]]:
    """The ``prepare.shards`` entry of ``dataset`` prepared whole."""
    return {dataset: {"dataset": dataset, "raw": raw, "shard": "1/1"}}


def make_project(root: Path, params_overrides: dict | None = None) -> Path:
    """Copy what the pipeline needs into ``root`` (git + DVC repository) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore", "workspace.yaml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("pipelines", "configs", "neurosam3d"):  # the package: the stages' code deps
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(REPO / ".dvc" / name, root / ".dvc" / name)
    shutil.copytree(REPO / "samples" / SMALL_RAW, root / "samples" / SMALL_RAW)
    (root / ".venv").symlink_to(REPO / ".venv")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["shards"] = whole(SMALL_DATASET, SMALL_RAW)
    for section, values in (params_overrides or {}).items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text(
        "/.venv\n/data/\n/work/\n/mlflow/\n/.dagster_home/\n/.dvc-remote/\n"
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")

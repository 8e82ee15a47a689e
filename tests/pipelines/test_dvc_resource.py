"""The DVC resource: commands resolved from params.yaml, calls serialised and cwd-independent."""

from pathlib import Path

import yaml

from pipelines.resources import DvcResource
from tests.racing import race


def _commit_then_status(root: str) -> bool:
    """Run by :func:`tests.racing.race` in its own interpreter, cwd the repository (not ``root``)."""
    dvc = DvcResource(root=root)
    dvc.commit("hello")
    return dvc.is_up_to_date("hello")


def test_parallel_commits_from_another_directory(project: Path, tmp_path: Path) -> None:
    """Three processes commit at once from outside the workspace: all succeed, none collides."""
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    pipeline["stages"]["hello"] = {"cmd": "echo hello > hello.txt", "outs": ["hello.txt"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (project / "hello.txt").write_text("hello\n")
    target = "tests.pipelines.test_dvc_resource:_commit_then_status"
    results = race(target, [(str(project),)] * 3, tmp_path / "race", run_timeout=120)
    assert results == [True, True, True]
    assert "hello.txt" in (project / "dvc.lock").read_text()


def test_stage_command_is_resolved_from_params(project: Path) -> None:
    command = DvcResource(root=str(project)).stage_command("prepare@sample_amos_style_cord")
    assert command.startswith(
        ".venv/bin/neurosam3d prepare --dataset configs/datasets/sample_amos_style_cord.yaml "
    )
    assert "--raw-root data --out work/data/datasets/sample_amos_style_cord" in command
    assert command.endswith(" --shard 1/1")  # prepared whole

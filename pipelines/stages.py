"""Run a DVC stage's command from Dagster and record it in dvc.lock.

Who executes: Dagster runs the stage's command itself (resolved by DVC from dvc.yaml and
params.yaml, so it is byte-for-byte what ``dvc repro`` would run), skipping it when ``dvc status``
says the stage is up to date, and then ``dvc commit``s the stage. Hence after a Dagster run
``dvc status`` is clean, and after ``dvc repro`` Dagster finds every stage up to date and only
reports the existing outputs.
"""

import os
import subprocess
from pathlib import Path

import dagster as dg

from pipelines.resources import DvcResource, MlflowResource, ProjectResource


def stage_env(project: ProjectResource, mlflow: MlflowResource) -> dict[str, str]:
    """The environment stage commands run in: ours plus the project folder and tracking URI."""
    return {**os.environ, **project.env(), **mlflow.env()}


def run_command(
    context: dg.AssetExecutionContext,
    command: str,
    project: ProjectResource,
    mlflow: MlflowResource,
) -> None:
    """Run a shell ``command`` in the project folder; its output goes to the run's logs."""
    context.log.info("running: %s", command)
    done = subprocess.run(
        command,
        shell=True,
        cwd=project.root,
        env=stage_env(project, mlflow),
        capture_output=True,
        text=True,
        check=False,
    )
    for stream in (done.stdout, done.stderr):
        if stream:
            context.log.info(stream[-20000:])
    if done.returncode != 0:
        raise dg.Failure(
            f"command failed with exit code {done.returncode}: {command}",
            metadata={"stderr": dg.MetadataValue.text(done.stderr[-20000:])},
        )


def run_stage(
    context: dg.AssetExecutionContext,
    stage: str,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
    receipt: Path | None = None,
) -> bool:
    """Run ``stage`` unless it is up to date, then commit it; True when the command ran.

    ``receipt``: a file the command writes that is no DVC output (the registration of this
    workspace's registry); the stage runs again when it is missing (the command is idempotent).
    Non-persistent outputs are deleted first, as ``dvc repro`` does.
    """
    if dvc.is_up_to_date(stage) and (receipt is None or receipt.is_file()):
        context.log.info("DVC stage %s is up to date: reporting its outputs", stage)
        return False
    dvc.remove_outs(stage)
    run_command(context, dvc.stage_command(stage), project, mlflow)
    dvc.commit(stage)
    return True

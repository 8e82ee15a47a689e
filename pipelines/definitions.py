"""The Dagster definitions (``workspace.yaml`` loads this module).

``NEUROSAM3D_DEPLOYMENT=team`` swaps the local resources for the team ones; the project folder
is ``$NEUROSAM3D_HOME`` or the folder holding this package. ``NEUROSAM3D_EXECUTOR`` picks the
executor of every job (:mod:`pipelines.executors`; multiprocess by default).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pipelines import automation, checks
from pipelines.assets import data, model, registry
from pipelines.executors import configured_executor
from pipelines.resources import local_resources, team_resources

PROJECT = Path(os.environ.get("NEUROSAM3D_HOME") or Path(__file__).resolve().parents[1])


def build_definitions(
    project: Path, deployment: str = "local", executor: str | None = None
) -> dg.Definitions:
    """All assets, checks, jobs, schedules and sensors with the resources of ``deployment``,
    run by ``executor`` (:func:`pipelines.executors.configured_executor`)."""
    if deployment not in ("local", "team"):
        raise ValueError(f"NEUROSAM3D_DEPLOYMENT must be 'local' or 'team', not {deployment!r}")
    resources = local_resources(project) if deployment == "local" else team_resources(project)
    return dg.Definitions(
        assets=[
            data.raw_dataset,
            data.prepared_dataset,
            data.combined_manifest,
            model.trained_model,
            model.evaluation,
            registry.registered_model,
            registry.promotion,
        ],
        asset_checks=[checks.challenger_scored],
        jobs=[
            automation.prepare_dataset_job,
            automation.retrain_job,
            automation.refresh_dataset_job,
        ],
        schedules=[automation.weekly_retraining],
        sensors=[automation.raw_data_version_sensor, automation.new_shard_sensor],
        resources={**resources, "pipes_subprocess_client": dg.PipesSubprocessClient()},
        executor=configured_executor(executor),
    )


defs = build_definitions(PROJECT, os.environ.get("NEUROSAM3D_DEPLOYMENT", "local"))

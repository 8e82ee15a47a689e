"""The trained model (DVC stage ``train``, run through Dagster Pipes) and its evaluation."""

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from pipelines.metadata import png_markdown, readable, table
from pipelines.params import cli_options
from pipelines.pipes_stage import flatten
from pipelines.resources import DvcResource, MlflowResource, ProjectResource
from pipelines.retrain import REASON_TAG, START_TAG, retrain_start
from pipelines.stages import run_stage, stage_env

GROUP = "model"
CLI = ".venv/bin/neurosam3d"


class TrainConfig(dg.Config):
    """Run-config overrides of params.yaml's ``train`` section (empty: use params.yaml).

    ``device`` is an execution detail: the run is still recorded in dvc.lock. A different
    ``config`` is an experiment: it runs, but dvc.lock keeps params.yaml's record (``dvc status``
    then shows the train stage as changed until params.yaml says the same). ``retrain``
    (``champion``: fine-tune from the @champion; ``fresh``: a new run) trains even when the
    stage is up to date, seeded with ``seed``, and records ``reason`` (:mod:`pipelines.retrain`);
    like an experiment it is not committed as params.yaml's record.

    ``devices``, ``nodes``, ``strategy`` and ``precision`` (0 / empty: the configuration's) are
    execution details like ``device``: ``trainer.devices``, ``trainer.num_nodes``,
    ``trainer.strategy`` (``ddp``: one process per device, Lightning starts them) and
    ``trainer.precision`` (``bf16-mixed``, ``32-true``, ...). Several nodes need one launcher per
    node (``torchrun --nnodes N`` or SLURM's ``srun``, README "Team deployment"), so ``nodes``
    above 1 suits a run whose step executes inside such an allocation.
    """

    device: str = ""
    config: str = ""
    retrain: str = ""
    seed: int = 0
    reason: str = ""
    devices: int = 0
    nodes: int = 0
    strategy: str = ""
    precision: str = ""

    def trainer_overrides(self) -> list[str]:
        """``--set`` items for the execution options that were given."""
        given = {
            "trainer.devices": self.devices or None,
            "trainer.num_nodes": self.nodes or None,
            "trainer.strategy": self.strategy or None,
            "trainer.precision": self.precision or None,
        }
        return [f"{key}={value}" for key, value in given.items() if value is not None]


@dg.asset(
    deps=["combined_manifest", "label_tree"],
    group_name=GROUP,
    kinds={"pytorch", "mlflow"},
    pool="gpu",
    description="Lightning training of the 3D SAM on simulated clicks (DVC stage `train`), "
    "as a Dagster Pipes subprocess; tracked in MLflow.",
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    params = project.params()["train"]
    summary_path = project.path / params["out"] / "summary.json"
    options = {**params, "device": config.device or params["device"]}
    experiment = bool(config.config) and config.config != params["config"]
    if experiment:  # params.yaml's overrides belong to params.yaml's configuration
        options = {**options, "config": config.config, "set": []}
    if config.trainer_overrides():
        options = {**options, "set": [*options.get("set", []), *config.trainer_overrides()]}
    start = None
    if config.retrain:
        start = retrain_start(
            mlflow.client(),
            project.params()["register"]["name"],
            config.retrain,
            config.seed,
            project.path / "work" / "retrain",
        )
        context.log.info("retraining (%s): %s", config.reason or "no reason given", start.start)
        options = {**options, "set": [*options.get("set", []), *start.overrides]}
    if options == params and dvc.is_up_to_date("train") and summary_path.is_file():
        context.log.info("DVC stage train is up to date: reporting its outputs")
        metadata = flatten(json.loads(summary_path.read_text()))
    else:
        dvc.remove_outs("train")
        # `neurosam3d train` refuses an output folder holding an earlier run; like `dvc repro`,
        # clear the stage's output first (its last run stays in the DVC cache and in MLflow)
        shutil.rmtree(project.path / options["out"], ignore_errors=True)
        command = (
            dvc.stage_command("train")
            if options == params
            else " ".join([CLI, "train", *cli_options(options)])
        )
        invocation = pipes_subprocess_client.run(
            context=context,
            command=[
                sys.executable,
                "-m",
                "pipelines.pipes_stage",
                "--summary",
                str(summary_path),
                "--",
                command,
            ],
            cwd=project.root,
            env=stage_env(project, mlflow),
        )
        metadata = dict(invocation.get_materialize_result().metadata or {})
        if start is not None:
            run_id = json.loads(summary_path.read_text())["run_id"]
            mlflow.client().set_tag(run_id, REASON_TAG, config.reason or "unspecified")
            mlflow.client().set_tag(run_id, START_TAG, start.start)
            metadata |= {"retrain_reason": config.reason, "retrain_start": start.start}
            context.log.warning("retrained: dvc.lock keeps the params.yaml record of stage train")
        elif experiment:
            context.log.warning(
                "trained with %s, not params.yaml's %s: dvc.lock keeps the params.yaml record",
                config.config,
                params["config"],
            )
        else:
            dvc.commit("train")
    summary = json.loads(summary_path.read_text())
    return dg.MaterializeResult(
        metadata={
            **readable(metadata),
            "mlflow_run": dg.MetadataValue.url(
                mlflow.run_url(summary["experiment_id"], summary["run_id"])
            ),
            "best_checkpoint": dg.MetadataValue.path(summary["best_checkpoint"]),
        }
    )


def evaluation_metadata(out: Path) -> dict[str, Any]:
    """The per-category Dice table, the Dice-vs-clicks plot and the summary's numbers."""
    summary = json.loads((out / "summary.json").read_text())
    metadata: dict[str, Any] = readable(flatten(summary))
    metadata["results_rows"] = pq.read_metadata(out / "results.parquet").num_rows
    for csv in sorted((out / "tables").glob("*.csv")):
        metadata[f"table_{csv.stem}"] = table(pd.read_csv(csv))
    for png in sorted(out.glob("*.png")):
        metadata[f"plot_{png.stem}"] = png_markdown(png, png.stem)
    return metadata


@dg.asset(
    deps=["trained_model", "combined_manifest", "label_tree"],
    group_name=GROUP,
    kinds={"parquet"},
    pool="evaluate",
    description="Interactive evaluation (DVC stage `evaluate`): per-(case, class, click) Dice and "
    "NSD, per-category tables and the Dice-vs-clicks plot.",
)
def evaluation(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    ran = run_stage(context, "evaluate", project, dvc, mlflow)
    params = project.params()
    out = project.path / params["evaluate"]["out"]
    metadata = {**evaluation_metadata(out), "ran": ran}
    # The evaluated checkpoint's training run: link it, and put the plot there, where the MLflow
    # UI shows images full size (registration logs it again with the tables).
    train = json.loads((project.path / params["train"]["out"] / "summary.json").read_text())
    experiment, run = train["experiment_id"], train["run_id"]
    metadata["mlflow_run"] = dg.MetadataValue.url(mlflow.run_url(experiment, run))
    for png in sorted(out.glob("*.png")):
        mlflow.client().log_artifact(run, str(png), "evaluation")
        metadata[f"plot_{png.stem}_in_mlflow"] = dg.MetadataValue.url(
            mlflow.artifact_url(experiment, run, f"evaluation/{png.name}")
        )
    return dg.MaterializeResult(metadata=metadata)

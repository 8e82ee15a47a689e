"""The registered model version (DVC stage ``register``) and its gated promotion."""

import json

import dagster as dg
import pandas as pd

from pipelines.metadata import table
from pipelines.params import cli_options
from pipelines.resources import DvcResource, MlflowResource, ProjectResource
from pipelines.stages import run_command, run_stage

GROUP = "registry"
CLI = ".venv/bin/neurosam3d"


@dg.asset(
    deps=["trained_model", "evaluation"],
    group_name=GROUP,
    kinds={"mlflow"},
    description="The trained model as an MLflow model version (pyfunc: NIfTI + clicks -> mask), "
    "tagged with data version, git commit, manifest hash and evaluation; gets @challenger.",
)
def registered_model(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    out = project.path / project.params()["register"]["out"]
    ran = run_stage(context, "register", project, dvc, mlflow, receipt=out / "registration.json")
    registration = json.loads((out / "registration.json").read_text())
    return dg.MaterializeResult(
        metadata={
            "ran": ran,
            "model": registration["name"],
            "version": registration["version"],
            "model_uri": registration["model_uri"],
            "model_version": dg.MetadataValue.url(
                mlflow.model_version_url(registration["name"], registration["version"])
            ),
            "mlflow_run": dg.MetadataValue.url(
                mlflow.run_url(registration["experiment_id"], registration["run_id"])
            ),
        }
    )


def rescore_champion(
    context: dg.AssetExecutionContext, project: ProjectResource, mlflow: MlflowResource
) -> str | None:
    """Re-evaluate ``@champion`` unless it was evaluated on the ``@challenger``'s manifest under
    the same protocol (both recorded and equal; a version without a protocol fingerprint, from
    before fingerprints were recorded, is re-evaluated).

    Runs ``neurosam3d evaluate --model models:/NAME/V`` with params.yaml's evaluation options
    into ``promote.champion-eval`` and replaces the champion's score tags; returns the version.
    """
    from neurosam3d.registry import tags
    from neurosam3d.registry.promotion import rescore, version_by_alias
    from neurosam3d.registry.register import scores_from_evaluation

    params = project.params()
    name = params["register"]["name"]
    client = mlflow.client()
    champion = version_by_alias(client, name, tags.CHAMPION)
    challenger = version_by_alias(client, name, tags.CHALLENGER)
    if champion is None or challenger is None:
        return None
    ours, theirs = (
        tags.evaluation_identity(champion.tags),
        tags.evaluation_identity(challenger.tags),
    )
    if None not in ours and ours == theirs:
        return None
    context.log.info(
        "re-evaluating the champion: manifest/protocol %s, challenger's %s", ours, theirs
    )
    version = str(champion.version)
    out = params["promote"]["champion-eval"]
    options = {k: v for k, v in params["evaluate"].items() if k != "checkpoint"}
    options |= {"model": f"models:/{name}/{version}", "out": out}
    run_command(context, " ".join([CLI, "evaluate", *cli_options(options)]), project, mlflow)
    rescore(client, name, version, scores_from_evaluation(project.path / out))
    return version


@dg.asset(
    deps=["registered_model"],
    group_name=GROUP,
    kinds={"mlflow"},
    pool="registry",
    description="Moves @champion to the @challenger if the gate passes (the 95% lower bound of "
    "the mean Dice difference, paired bootstrap over targets, above -margin; no category worse "
    "than the champion by more than params.yaml's margin at the evaluation's clicks; the "
    "champion is re-evaluated first when the evaluation manifest or protocol changed) and it "
    "wins the registry's promotion round.",
)
def promotion(
    context: dg.AssetExecutionContext, project: ProjectResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from neurosam3d.registry.promotion import promote

    params = project.params()
    name = params["register"]["name"]
    rescored = rescore_champion(context, project, mlflow)
    outcome = promote(mlflow.client(), name, margin=float(params["promote"]["margin"]))
    rows = pd.DataFrame(
        [
            {
                "name": r.name,
                "champion": r.champion,
                "challenger": r.challenger,
                "delta": r.delta,
                "ci_low": r.low,
                "ci_high": r.high,
                "targets": r.targets,
                "allowed_drop": r.allowed_drop,
                "passed": r.passed and outcome.gate.comparable,
            }
            for r in outcome.gate.rows
        ]
    )
    champion = outcome.champion_after or "none"
    return dg.MaterializeResult(
        metadata={
            "action": outcome.action.value,
            "challenger": outcome.challenger,
            "champion_before": outcome.champion_before or "none",
            "champion": champion,
            "champion_rescored": rescored or "no",
            "comparable": outcome.gate.comparable,
            "gate": table(rows),
            "reasons": dg.MetadataValue.md(
                "\n".join(f"- {r}" for r in outcome.gate.reasons) or "passed"
            ),
            "champion_version": dg.MetadataValue.url(mlflow.model_version_url(name, champion)),
        }
    )

"""The registered model version (DVC stage ``register``) and its gated promotion."""

import json

import dagster as dg
import pandas as pd

from pipelines.metadata import table
from pipelines.resources import DvcResource, MlflowResource, ProjectResource
from pipelines.stages import run_stage

GROUP = "registry"


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
    ran = run_stage(context, "register", project, dvc, mlflow)
    out = project.path / project.params()["register"]["out"]
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


@dg.asset(
    deps=["registered_model"],
    group_name=GROUP,
    kinds={"mlflow"},
    pool="registry",
    description="Moves @champion to the @challenger if the gate passes (no category worse than "
    "the champion by more than params.yaml's margin at the evaluation's clicks, mean not worse).",
)
def promotion(project: ProjectResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    from neurosam3d.registry.promotion import promote

    params = project.params()
    name = params["register"]["name"]
    outcome = promote(
        mlflow.client(), name, mlflow.locks(), margin=float(params["promote"]["margin"])
    )
    rows = pd.DataFrame(
        [
            {
                "name": r.name,
                "champion": r.champion,
                "challenger": r.challenger,
                "delta": r.delta,
                "allowed_drop": r.allowed_drop,
                "passed": r.passed,
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
            "gate": table(rows),
            "reasons": dg.MetadataValue.md(
                "\n".join(f"- {r}" for r in outcome.gate.reasons) or "passed"
            ),
            "champion_version": dg.MetadataValue.url(mlflow.model_version_url(name, champion)),
        }
    )

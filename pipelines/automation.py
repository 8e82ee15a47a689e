"""Jobs, the weekly retraining schedule and the sensors for new and changed raw data."""

import json

import dagster as dg

from pipelines.partitions import DATASETS
from pipelines.resources import DvcResource, ProjectResource

PER_DATASET = dg.AssetSelection.assets("raw_dataset", "label_tree", "dataset_manifest")
RETRAIN = dg.AssetSelection.assets(
    "combined_manifest", "trained_model", "evaluation", "registered_model", "promotion"
)

#: One dataset partition: raw data version, label tree, manifests.
prepare_dataset_job = dg.define_asset_job("prepare_dataset", selection=PER_DATASET)
#: Everything after the per-dataset manifests: combine, train, evaluate, register, promote.
retrain_job = dg.define_asset_job("retrain", selection=RETRAIN)
#: A changed dataset end to end: its partition, then retraining on the new combined manifest.
refresh_dataset_job = dg.define_asset_job("refresh_dataset", selection=PER_DATASET | RETRAIN)

weekly_retraining = dg.ScheduleDefinition(
    name="weekly_retraining",
    job=retrain_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    description="Retrain, evaluate, register and (if the gate passes) promote every Monday 03:00.",
)


def _last_data_version(instance: dg.DagsterInstance, partition: str) -> str | None:
    """The data version recorded by the latest ``raw_dataset`` materialisation of ``partition``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_dataset"), asset_partitions=[partition]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return records[0].asset_materialization.tags.get("dagster/data_version")


def _read_cursor(cursor: str | None) -> dict[str, dict]:
    """``{dataset: {"version": last seen data version, "changes": changes seen so far}}``."""
    try:
        found = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


@dg.sensor(
    job=refresh_dataset_job,
    minimum_interval_seconds=300,
    description="Retrains when a dataset's raw folder has a DVC hash other than the one last seen "
    "(a new one, or a revert to an earlier one), or was never seen.",
)
def raw_data_version_sensor(
    context: dg.SensorEvaluationContext, project: ProjectResource, dvc: DvcResource
) -> dg.SensorResult:
    """The cursor holds each dataset's last seen version and a change counter. A run is requested
    whenever the version differs from the cursor's (so going back to an earlier hash retrains
    too); its run key counts the changes, so an A -> B -> A -> B history never repeats a key.
    With no cursor entry yet, the version of the latest ``raw_dataset`` materialisation stands in.
    """
    known = set(context.instance.get_dynamic_partitions(DATASETS.name))
    seen = _read_cursor(context.cursor)
    requests = []
    for key in project.datasets():
        folder = project.raw_folder(key)
        if key not in known or not folder.is_dir():
            continue
        version = dvc.folder_hash(folder)
        entry = seen.get(key)
        if entry is None:
            entry = {"version": _last_data_version(context.instance, key), "changes": 0}
        previous, changes = entry.get("version"), int(entry.get("changes", 0))
        if version != previous:
            changes += 1
            context.log.info("dataset %s: data version %s -> %s", key, previous, version)
            requests.append(
                dg.RunRequest(
                    run_key=f"{key}:{changes}:{previous or 'none'}->{version}",
                    partition_key=key,
                    tags={"neurosam3d/data_version": version},
                )
            )
        seen[key] = {"version": version, "changes": changes}
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


@dg.sensor(
    minimum_interval_seconds=60,
    description="Adds a partition for each dataset newly listed in params.yaml (starts no run).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_dataset_sensor(
    context: dg.SensorEvaluationContext, project: ProjectResource
) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(DATASETS.name))
    new = sorted(set(project.datasets()) - known)
    if new:
        context.log.info("new datasets in params.yaml: %s", ", ".join(new))
    return dg.SensorResult(
        dynamic_partitions_requests=[DATASETS.build_add_request(new)] if new else []
    )

"""Jobs, the weekly retraining schedule and the sensors for new and changed raw data."""

import json

import dagster as dg

from pipelines.fingerprint import stat_fingerprint
from pipelines.partitions import SHARDS
from pipelines.resources import ProjectResource

PER_DATASET = dg.AssetSelection.assets("raw_dataset", "label_tree", "dataset_manifest")
RETRAIN = dg.AssetSelection.assets(
    "combined_manifest", "trained_model", "evaluation", "registered_model", "promotion"
)

#: One partition (a dataset, or a shard of one): raw data version, label tree, manifests.
prepare_dataset_job = dg.define_asset_job("prepare_dataset", selection=PER_DATASET)
#: Everything after the per-dataset manifests: combine, train, evaluate, register, promote.
retrain_job = dg.define_asset_job("retrain", selection=RETRAIN)
#: A changed dataset (prepared whole) end to end: its partition, then retraining on the new
#: combined manifest.
refresh_dataset_job = dg.define_asset_job("refresh_dataset", selection=PER_DATASET | RETRAIN)


@dg.schedule(
    name="weekly_retraining",
    job=retrain_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    description="Every Monday 03:00: fine-tune from the @champion (a new seeded run when there "
    "is none), evaluate, register and, if the gate passes, promote; the run records why.",
)
def weekly_retraining(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """A retraining that retrains: seeded by the tick's time, so every week is a new run."""
    when = context.scheduled_execution_time
    reason = f"weekly schedule, {when:%Y-%m-%d %H:%M} UTC"
    config = {"retrain": "champion", "seed": int(when.timestamp()) % 2**31, "reason": reason}
    return dg.RunRequest(
        run_config={"ops": {"trained_model": {"config": config}}},
        tags={"neurosam3d/retrain_reason": reason},
    )


def _last_fingerprint(instance: dg.DagsterInstance, partition: str) -> str | None:
    """The raw-folder fingerprint recorded by the latest ``raw_dataset`` materialisation."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_dataset"), asset_partitions=[partition]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("stat_fingerprint")
    return None if value is None else str(value.value)


def _read_cursor(cursor: str | None) -> dict[str, dict]:
    """``{dataset: {"fingerprint": last seen stat fingerprint, "changes": changes so far}}``."""
    try:
        found = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


@dg.sensor(
    jobs=[refresh_dataset_job, prepare_dataset_job],
    minimum_interval_seconds=300,
    description="Refreshes a dataset whose raw folder changed (file names, sizes or mtimes other "
    "than last seen, reverts included) or was never seen; reads no file contents. A dataset in "
    "N shards gets one prepare_dataset run per shard (retraining follows with the next retrain).",
)
def raw_data_version_sensor(
    context: dg.SensorEvaluationContext, project: ProjectResource
) -> dg.SensorResult:
    """The cursor holds each dataset's last seen stat fingerprint and a change counter. The tick
    only walks the folders (:func:`~pipelines.fingerprint.stat_fingerprint`); the run it starts
    computes the DVC hash (``raw_dataset``) and DVC decides what is stale, so a mere touch
    re-runs nothing expensive. Run keys count the changes, so no history repeats a key. With no
    cursor entry yet, the fingerprint of the latest ``raw_dataset`` materialisation stands in.

    Entries are per partition. A dataset prepared whole gets a ``refresh_dataset`` run (its
    partition, then retraining); the N shards of a dataset prepared in N get a
    ``prepare_dataset`` run each, side by side: N retrainings racing the other shards would
    combine a half-refreshed dataset (``neurosam3d combine`` refuses stale shards).
    """
    known = set(context.instance.get_dynamic_partitions(SHARDS.name))
    seen = _read_cursor(context.cursor)
    requests = []
    walked: dict[str, str] = {}  # raw folder -> fingerprint: N shards, one walk
    for key in project.shards():
        folder = project.raw_folder(key)
        if key not in known or not folder.is_dir():
            continue
        if str(folder) not in walked:
            walked[str(folder)] = stat_fingerprint(folder)
        fingerprint = walked[str(folder)]
        whole = project.shard(key).shard[1] == 1
        entry = seen.get(key)
        if entry is None:
            entry = {"fingerprint": _last_fingerprint(context.instance, key), "changes": 0}
        previous, changes = entry.get("fingerprint"), int(entry.get("changes", 0))
        if fingerprint != previous:
            changes += 1
            context.log.info(
                "dataset %s: raw folder changed (%s -> %s)", key, previous, fingerprint
            )
            requests.append(
                dg.RunRequest(
                    run_key=f"{key}:{changes}:{(previous or 'none')[:12]}->{fingerprint[:12]}",
                    job_name=(refresh_dataset_job if whole else prepare_dataset_job).name,
                    partition_key=key,
                    tags={"neurosam3d/raw_fingerprint": fingerprint},
                )
            )
        seen[key] = {"fingerprint": fingerprint, "changes": changes}
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


@dg.sensor(
    minimum_interval_seconds=60,
    description="Adds a partition for each entry newly listed in params.yaml's prepare.shards "
    "(a dataset, or a shard of one; starts no run).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_shard_sensor(
    context: dg.SensorEvaluationContext, project: ProjectResource
) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(SHARDS.name))
    new = sorted(set(project.shards()) - known)
    if new:
        context.log.info("new partitions in params.yaml: %s", ", ".join(new))
    return dg.SensorResult(
        dynamic_partitions_requests=[SHARDS.build_add_request(new)] if new else []
    )

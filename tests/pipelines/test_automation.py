"""Sensors, schedule and the per-dataset assets on one real sample dataset."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from neurosam3d.demo import sync_samples
from pipelines.assets import data
from pipelines.definitions import build_definitions
from pipelines.partitions import SHARDS
from pipelines.resources import local_resources
from tests.pipelines.conftest import SMALL_DATASET, SMALL_RAW


@pytest.fixture()
def with_data(project: Path) -> Path:
    sync_samples(project / "samples", project / "data")
    return project


def test_weekly_schedule_requests_retraining(project: Path) -> None:
    schedule = build_definitions(project).resolve_schedule_def("weekly_retraining")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 30, 3, tzinfo=UTC)
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert requests is not None and len(requests) == 1
    assert schedule.job_name == "retrain"
    config = requests[0].run_config["ops"]["trained_model"]["config"]
    assert config["retrain"] == "champion"  # retrains even when no input changed
    assert config["reason"] == "weekly schedule, 2026-11-30 03:00 UTC"
    later = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 7, 3, tzinfo=UTC))
    (next_week,) = schedule.evaluate_tick(later).run_requests or []
    assert next_week.run_config["ops"]["trained_model"]["config"]["seed"] != config["seed"]


def test_retraining_starts_from_the_champion_or_fresh(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from neurosam3d.registry import tags as T
    from pipelines.retrain import retrain_start

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("seg")
    fresh = retrain_start(client, "seg", "champion", 7, tmp_path / "retrain")
    assert fresh.overrides == ("seed=7",) and "has no @champion" in fresh.start

    model = tmp_path / "model"  # a registered pyfunc folder: weights under artifacts/
    (model / "artifacts").mkdir(parents=True)
    (model / "artifacts" / "weights.safetensors").write_bytes(b"weights")
    version = client.create_model_version("seg", model.as_uri()).version
    client.set_registered_model_alias("seg", T.CHAMPION, version)
    start = retrain_start(client, "seg", "champion", 7, tmp_path / "retrain")
    checkpoint = Path(start.overrides[0].removeprefix("model.checkpoint="))
    assert checkpoint.read_bytes() == b"weights" and tmp_path / "retrain" in checkpoint.parents
    assert start.overrides[1] == "seed=7"
    assert start.start == f"fine-tuned from seg v{version} (@champion), seed 7"


def test_sensors_add_new_datasets_and_refresh_on_every_raw_change(with_data: Path) -> None:
    import os

    defs = build_definitions(with_data)
    resources = local_resources(with_data)
    instance = dg.DagsterInstance.ephemeral()
    cursors: dict[str, str | None] = {}

    def tick(name: str) -> dg.SensorResult:
        sensor = defs.resolve_sensor_def(name)
        context = dg.build_sensor_context(
            instance=instance, resources=resources, cursor=cursors.get(name)
        )
        result = sensor(context)
        cursors[name] = result.cursor or cursors.get(name)
        return result

    added = tick("new_shard_sensor").dynamic_partitions_requests
    assert [list(r.partition_keys) for r in added] == [[SMALL_DATASET]]
    instance.add_dynamic_partitions(SHARDS.name, [SMALL_DATASET])
    assert not tick("new_shard_sensor").dynamic_partitions_requests

    first = tick("raw_data_version_sensor").run_requests
    assert [r.partition_key for r in first] == [SMALL_DATASET]  # never materialised: new data
    dg.materialize(
        [data.raw_dataset], partition_key=SMALL_DATASET, instance=instance, resources=resources
    )
    cursors["raw_data_version_sensor"] = None  # a fresh cursor: the materialisation stands in
    assert tick("raw_data_version_sensor").run_requests == []  # no change, no run

    label = next((with_data / "data" / SMALL_RAW / "labelsTr").iterdir())
    original, stat = label.read_bytes(), label.stat()
    label.write_bytes(original + b"\0")  # new raw bytes
    changed = tick("raw_data_version_sensor").run_requests
    assert [r.partition_key for r in changed] == [SMALL_DATASET]
    assert changed[0].run_key != first[0].run_key
    assert tick("raw_data_version_sensor").run_requests == []  # B seen: no change, no run

    label.write_bytes(original)  # back to the earlier bytes: a change all the same
    reverted = tick("raw_data_version_sensor").run_requests
    assert [r.partition_key for r in reverted] == [SMALL_DATASET]
    assert tick("raw_data_version_sensor").run_requests == []

    label.write_bytes(original + b"\0")  # A -> B -> A -> B: every key is new
    again = tick("raw_data_version_sensor").run_requests
    keys = [r.run_key for r in (*first, *changed, *reverted, *again)]
    assert len(set(keys)) == 4

    # The tick reads no file contents: other bytes under the same size and mtime go unseen.
    stat = label.stat()
    label.write_bytes(bytes(b ^ 0xFF for b in original + b"\0"))
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tick("raw_data_version_sensor").run_requests == []


def test_dataset_partition_materialises_with_passing_checks(with_data: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, [SMALL_DATASET])
    result = dg.materialize(
        [data.raw_dataset, data.prepared_dataset],
        partition_key=SMALL_DATASET,
        instance=instance,
        resources=local_resources(with_data),
    )
    assert result.success
    manifest = result.asset_materializations_for_node("prepared_dataset")[1]
    assert manifest.metadata["rows"].value == 2  # spinal cord in one Tr and one Val case
    assert manifest.metadata["quarantine_rows"].value == 0
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {
        "masks_on_image_grid",
        "manifest_schema",
        "quarantine_growth",
    }
    assert all(c.passed for c in checks)
    tree = with_data / "work" / "data" / "datasets" / SMALL_DATASET / "SCTPaired"
    assert (tree / "labelsTr" / "spinal_cord").is_dir()

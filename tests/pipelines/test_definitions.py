"""The Dagster definitions load and their asset graph is the DVC pipeline's graph."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipelines.definitions import build_definitions
from pipelines.resources import DvcResource
from tests.pipelines.conftest import REPO, SMALL_DATASET

#: Which DVC stage (or .dvc file) produces each asset; None: Dagster only (registry alias).
#: ``prepare`` stands for the per-dataset stages ``prepare@<partition key>``.
DVC_STAGE_OF = {
    "raw_dataset": "data.dvc",
    "label_tree": "prepare",
    "dataset_manifest": "prepare",
    "combined_manifest": "combine",
    "trained_model": "train",
    "evaluation": "evaluate",
    "registered_model": "register",
    "promotion": None,
}


def test_definitions_load_with_every_asset_check_job_schedule_and_sensor() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(DVC_STAGE_OF)
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("label_tree", "masks_on_image_grid"),
        ("dataset_manifest", "manifest_schema"),
        ("dataset_manifest", "quarantine_growth"),
        ("combined_manifest", "manifest_schema"),
        ("registered_model", "challenger_scored"),
    }
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "prepare_dataset",
        "retrain",
        "refresh_dataset",
    }
    assert defs.resolve_schedule_def("weekly_retraining").cron_schedule == "0 3 * * 1"
    sensor = defs.resolve_sensor_def("raw_data_version_sensor")
    assert {job.name for job in sensor.jobs} == {"refresh_dataset", "prepare_dataset"}
    assert graph.get(dg.AssetKey("trained_model")).pools == {"gpu"}
    assert graph.get(dg.AssetKey("evaluation")).pools == {"evaluate"}
    assert graph.get(dg.AssetKey("combined_manifest")).pools == {"combine"}


def test_team_definitions_use_the_team_services(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:15000")
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:15000")
    monkeypatch.setenv("NEUROSAM3D_LOCK_DIR", str(project / "locks"))
    monkeypatch.setenv("NEUROSAM3D_CELERY_BROKER", "redis://127.0.0.1:16379/0")
    monkeypatch.setenv("NEUROSAM3D_CELERY_BACKEND", "redis://127.0.0.1:16379/1")
    team = build_definitions(project, "team", executor="celery")
    local = build_definitions(project)
    assert {k.to_user_string() for k in team.resolve_asset_graph().get_all_asset_keys()} == set(
        DVC_STAGE_OF
    )
    dvc, mlflow = team.resources["dvc"], team.resources["mlflow"]
    assert (dvc.remote, dvc.push) == ("team", True)  # every commit is pushed to the S3 remote
    assert (local.resources["dvc"].remote, local.resources["dvc"].push) == ("local", False)
    with dg.build_resources({"mlflow": mlflow}) as built:
        assert built.mlflow.uri() == "http://127.0.0.1:15000"
        assert built.mlflow.env()["NEUROSAM3D_LOCK_DIR"] == str(project / "locks")
    for job in ("prepare_dataset", "retrain", "refresh_dataset"):
        assert team.resolve_job_def(job).executor_def.name == "celery"
        assert local.resolve_job_def(job).executor_def.name == "multiprocess"
    dvc_config = (REPO / ".dvc" / "config").read_text()
    assert "['remote \"team\"']\n    url = s3://neurosam3d/dvc" in dvc_config


def test_executor_is_chosen_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.executors import configured_executor

    monkeypatch.delenv("NEUROSAM3D_EXECUTOR", raising=False)
    assert configured_executor().name == "multiprocess"
    monkeypatch.setenv("NEUROSAM3D_EXECUTOR", "celery")
    assert configured_executor().name == "celery"
    with pytest.raises(ValueError, match="must be one of multiprocess, celery, k8s, not 'spark'"):
        configured_executor("spark")
    with pytest.raises(ValueError, match="dagster-k8s package"):
        configured_executor("k8s")  # not installed here: documented for clusters


def test_team_instance_queues_runs_on_postgres() -> None:
    config = yaml.safe_load((REPO / "pipelines" / "team" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["port"] == {"env": "DAGSTER_PG_PORT"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1


def test_training_run_config_exposes_distributed_options() -> None:
    from pipelines.assets.model import TrainConfig

    assert TrainConfig().trainer_overrides() == []
    given = TrainConfig(devices=8, nodes=2, strategy="ddp", precision="bf16-mixed")
    assert given.trainer_overrides() == [
        "trainer.devices=8",
        "trainer.num_nodes=2",
        "trainer.strategy=ddp",
        "trainer.precision=bf16-mixed",
    ]


def _unpartitioned(stage: str) -> str:
    return stage.split("@")[0]


def test_dagster_graph_matches_dvc_graph(project: Path) -> None:
    (project / "data.dvc").write_text((REPO / "data.dvc").read_text())
    stages = DvcResource(root=str(project)).graph()
    assert ("data.dvc", f"prepare@{SMALL_DATASET}") in stages  # one stage per partition key
    dvc_edges = {(_unpartitioned(a), _unpartitioned(b)) for a, b in stages}
    graph = build_definitions(project).resolve_asset_graph()
    dagster_edges = set()
    for key in graph.get_all_asset_keys():
        for parent in graph.get(key).parent_keys:
            up, down = DVC_STAGE_OF[parent.to_user_string()], DVC_STAGE_OF[key.to_user_string()]
            if up and down and up != down:
                dagster_edges.add((up, down))
    assert dagster_edges == dvc_edges
    assert ("prepare", "combine") in dvc_edges and ("evaluate", "register") in dvc_edges


def test_instance_runs_one_run_per_dataset_partition_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text((REPO / "pipelines" / "dagster.yaml").read_text())
    queue = dg.DagsterInstance.from_config(str(tmp_path)).get_concurrency_config()
    limits = queue.run_queue_config.tag_concurrency_limits
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in (limits)

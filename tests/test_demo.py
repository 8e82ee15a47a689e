"""`make demo`'s pipeline end to end on the smallest sample, and the data it versions."""

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from neurosam3d.demo import run_demo, sync_samples
from pipelines.resources import DvcResource
from tests.pipelines.conftest import REPO, make_project

ASSETS = {
    "raw_dataset",
    "label_tree",
    "dataset_manifest",
    "combined_manifest",
    "trained_model",
    "evaluation",
    "registered_model",
    "promotion",
}
ASSET_KEYS = [dg.AssetKey(name) for name in sorted(ASSETS)]


def test_samples_copy_reproduces_the_committed_data_dvc_hash(tmp_path: Path) -> None:
    """Two fresh copies hash identically, to the md5 committed in data.dvc."""
    committed = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    for name in ("a", "b"):
        project = make_project(tmp_path / name)
        sync_samples(REPO / "samples", project / "data")
        assert DvcResource(root=str(project)).folder_hash("data") == committed, (
            "samples/ changed: run `make demo` and commit the new data.dvc"
        )


def _materialised(instance: dg.DagsterInstance) -> set[str]:
    return {
        key.to_user_string()
        for key in ASSET_KEYS
        if instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1).records
    }


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = make_project(
        tmp_path / "project",
        {
            "train": {
                "set": [
                    "trainer.max_steps=2",
                    "trainer.max_time_s=60",
                    "trainer.val_every_n_steps=2",
                    "trainer.validate_before_training=false",
                    "data.val_max_items=2",
                    "data.samples_per_epoch=4",
                ]
            },
            "evaluate": {"manifest": ["work/data/manifests/SCTPaired_Val.parquet"], "clicks": 5},
        },
    )
    run_demo(project)  # raises unless every run succeeds and `dvc status` is clean afterwards

    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("neurosam3d", "champion")
    registration = json.loads((project / "work" / "register" / "registration.json").read_text())
    assert str(champion.version) == registration["version"]
    data_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert champion.tags["neurosam3d.data_version"] == data_md5
    assert champion.tags["neurosam3d.eval.clicks"] == "5"
    assert any((project / ".dvc-remote").rglob("*")), "the demo pushes to the local DVC remote"

    instance = dg.DagsterInstance.from_config(str(project / ".dagster_home"))
    assert _materialised(instance) == ASSETS
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("registered_model"), "comparable_with_champion")]
    )
    assert all(c.status.value == "SUCCEEDED" for c in checks.values())

    # A second run finds every DVC stage up to date and the champion already promoted.
    run_demo(project, push=False)
    assert client.get_model_version_by_alias("neurosam3d", "champion").version == champion.version
    assert len(client.search_model_versions("name = 'neurosam3d'")) == 1

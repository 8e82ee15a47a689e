"""A dataset prepared in shards through the pipeline: two shard partitions of one dataset
materialised (their DVC stages run and committed), combined into one manifest; the DVC stage
list is the Dagster partition list; params.yaml's shard entries are checked."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from neurosam3d.demo import sync_samples
from pipelines.assets import data
from pipelines.params import shard_entries
from pipelines.partitions import SHARDS
from pipelines.resources import DvcResource, ProjectResource, local_resources
from tests.pipelines.conftest import REPO, SMALL_DATASET, SMALL_RAW, make_project

KEYS = [f"{SMALL_DATASET}-1of2", f"{SMALL_DATASET}-2of2"]


def _sharded(count: int) -> dict[str, dict[str, str]]:
    return {
        f"{SMALL_DATASET}-{i}of{count}": {
            "dataset": SMALL_DATASET,
            "raw": SMALL_RAW,
            "shard": f"{i}/{count}",
        }
        for i in range(1, count + 1)
    }


@pytest.fixture()
def sharded(tmp_path: Path) -> Path:
    project = make_project(tmp_path / "project", {"prepare": {"shards": _sharded(2)}})
    sync_samples(project / "samples", project / "data")
    return project


def _prepare_stages(project: Path) -> dict[str, str]:
    """``prepare@<key>`` -> its command, as DVC resolves dvc.yaml with the project's params."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        stages = repo.stage.collect()
    names = {getattr(s, "name", None) or "": s for s in stages}  # .dvc files have no name
    return {n: str(s.cmd) for n, s in names.items() if n.startswith("prepare@")}


def test_two_shard_partitions_of_one_dataset_materialise_and_combine(sharded: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, KEYS)
    resources = local_resources(sharded)
    cases = {}
    for key in KEYS:
        result = dg.materialize(
            [data.raw_dataset, data.prepared_dataset],
            partition_key=key,
            instance=instance,
            resources=resources,
        )
        assert result.success
        tree, manifest = result.asset_materializations_for_node("prepared_dataset")
        assert manifest.metadata["shard"].value == key[-4:].replace("of", "/")
        assert manifest.metadata["rows"].value == 1  # one of the two cases each
        assert all(c.passed for c in result.get_asset_check_evaluations())
        assert tree.metadata["ran"].value
        root = sharded / "work" / "data" / "datasets" / key
        cases[key] = {p.name for p in (root / "SCTPaired").glob("images*/*.nii.gz")}
    assert cases[KEYS[0]].isdisjoint(cases[KEYS[1]])  # each shard wrote its own cases
    assert set().union(*cases.values()) == {"sct_t2.nii.gz", "sct_t2s.nii.gz"}
    dvc = DvcResource(root=str(sharded))
    assert not {f"prepare@{k}" for k in KEYS} & set(dvc.stale_stages())  # committed

    result = dg.materialize([data.combined_manifest], instance=instance, resources=resources)
    assert result.success
    combined = sharded / "work" / "data"
    rows = pq.read_table(combined / "manifest.parquet").to_pylist()
    assert [(r["split"], r["case_id"]) for r in rows] == [("Tr", "sct_t2"), ("Val", "sct_t2s")]
    assert {r["mask_path"].split("/")[1] for r in rows} == set(KEYS)  # in the shards' roots
    assert all((combined / r["mask_path"]).is_file() for r in rows)
    tables = sorted(p.name for p in (combined / "manifests").glob("*.parquet"))
    assert tables == [
        f"SCTPaired_{t}.parquet" for t in ("Tr", "Val", "absent", "quarantine", "store")
    ]


def test_dvc_stages_are_the_dagster_partitions(sharded: Path) -> None:
    for project in (sharded, REPO):
        keys = ProjectResource(root=str(project)).shards()
        stages = _prepare_stages(project)
        assert sorted(stages) == sorted(f"prepare@{k}" for k in keys)
        for key, entry in shard_entries(
            yaml.safe_load((project / "params.yaml").read_text())
        ).items():
            command = stages[f"prepare@{key}"]
            assert f"--dataset configs/datasets/{entry.dataset}.yaml " in command
            assert f"--out work/data/datasets/{key} " in command
            assert command.endswith(f" --shard {entry.spec}")
    assert sorted(_prepare_stages(sharded)) == [f"prepare@{k}" for k in KEYS]
    # every shipped sample is prepared whole: the demo's partitions are its datasets
    whole = ProjectResource(root=str(REPO))
    assert all(
        whole.shard(k).shard == (1, 1) and whole.shard(k).dataset == k for k in whole.shards()
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.pop(KEYS[1]), r"in 2 shards but not sample_amos_style_cord-2of2: add them"),
        (
            lambda s: s[KEYS[1]].update(shard="2/3"),
            r"key of shard 2/3 .* must be 'sample_amos_style_cord-2of3'",
        ),
        (
            lambda s: s[KEYS[0]].update(shard="3/2"),
            r"prepare.shards.sample_amos_style_cord-1of2: shard '3/2'",
        ),
        (lambda s: s.update(_sharded(3)), r"in 2 and 3 shards: keep the entries of one count"),
        (lambda s: s[KEYS[1]].update(raw="other"), r"raw folders amos_style, other"),
        (lambda s: s[KEYS[0]].pop("raw"), r"expected \{dataset: ..., raw: ..., shard: I/N\}"),
    ],
)
def test_shard_entries_are_checked(change, problem: str) -> None:
    shards = _sharded(2)
    change(shards)
    with pytest.raises(ValueError, match=problem):
        shard_entries({"prepare": {"shards": shards}})


def test_a_raw_change_starts_a_prepare_run_per_shard(sharded: Path) -> None:
    from pipelines.definitions import build_definitions

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, KEYS)
    sensor = build_definitions(sharded).resolve_sensor_def("raw_data_version_sensor")
    context = dg.build_sensor_context(instance=instance, resources=local_resources(sharded))
    requests = sensor(context).run_requests
    # side by side, no retraining per shard (it would combine a half-refreshed dataset)
    assert sorted((r.partition_key, r.job_name) for r in requests) == [
        (key, "prepare_dataset") for key in KEYS
    ]


def test_a_shard_without_cases_materialises(tmp_path: Path) -> None:
    from neurosam3d.data.shards import shard_of

    project = make_project(tmp_path / "project", {"prepare": {"shards": _sharded(3)}})
    sync_samples(project / "samples", project / "data")
    empty = next(i for i in (1, 2, 3) if i not in {shard_of(c, 3) for c in ("sct_t2", "sct_t2s")})
    key = f"{SMALL_DATASET}-{empty}of3"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, [key])
    result = dg.materialize(
        [data.raw_dataset, data.prepared_dataset],
        partition_key=key,
        instance=instance,
        resources=local_resources(project),
    )
    assert result.success
    manifest = result.asset_materializations_for_node("prepared_dataset")[1]
    assert manifest.metadata["rows"].value == 0 and manifest.metadata["empty_shard"].value

"""A dataset prepared in shards through the pipeline: two shard partitions of one dataset
materialised by two Dagster runs at once (their DVC stages run and committed), combined into
one manifest; the DVC stage
list is the Dagster partition list; params.yaml's shard entries are checked."""

from __future__ import annotations

import os
import subprocess
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


def _materialize_at_once(project: Path, home: Path, keys: list[str]) -> None:
    """One ``dagster asset materialize`` run per partition, all started at once (separate
    processes on one instance, as the daemon launches them); each must succeed."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEUROSAM3D_HOME": str(project)}
    command = [str(REPO / ".venv" / "bin" / "dagster"), "asset", "materialize"]
    command += [
        "-m",
        "pipelines.definitions",
        "--select",
        "raw_dataset,label_tree,dataset_manifest",
    ]
    running = [
        subprocess.Popen(
            [*command, "--partition", key],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for key in keys
    ]
    for process in running:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-5000:]


def test_two_shard_partitions_of_one_dataset_materialise_at_once_and_combine(
    sharded: Path, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"  # the local instance's configuration, on disk
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "pipelines" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(SHARDS.name, KEYS)
    _materialize_at_once(sharded, home, KEYS)
    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert sorted(r.tags["dagster/partition"] for r in runs) == KEYS
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    for run in runs:  # every check of both shards ran and passed
        events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        evaluations = [e.dagster_event.event_specific_data for e in events if e.dagster_event]
        assert sorted(e.check_name for e in evaluations) == [
            "manifest_schema",
            "masks_on_image_grid",
            "quarantine_growth",
        ]
        assert all(e.passed for e in evaluations)
    cases = {}
    for key in KEYS:
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("dataset_manifest"), asset_partitions=[key]
            ),
            limit=5,
        ).records
        assert record.asset_materialization is not None
        metadata = record.asset_materialization.metadata
        assert metadata["shard"].value == key[-4:].replace("of", "/")
        assert metadata["rows"].value == 1 and metadata["ran"].value  # one of two cases each
        root = sharded / "work" / "data" / "datasets" / key
        cases[key] = {p.name for p in (root / "SCTPaired").glob("images*/*.nii.gz")}
    assert cases[KEYS[0]].isdisjoint(cases[KEYS[1]])  # each shard wrote its own cases
    assert set().union(*cases.values()) == {"sct_t2.nii.gz", "sct_t2s.nii.gz"}
    dvc = DvcResource(root=str(sharded))
    assert not {f"prepare@{k}" for k in KEYS} & set(dvc.stale_stages())  # committed

    result = dg.materialize(
        [data.combined_manifest], instance=instance, resources=local_resources(sharded)
    )
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


def test_a_shard_listed_twice_is_refused(tmp_path: Path) -> None:
    from pipelines.params import load_params

    entry = f"    {KEYS[0]}: {{dataset: {SMALL_DATASET}, raw: {SMALL_RAW}, shard: 1/2}}\n"
    (tmp_path / "params.yaml").write_text("prepare:\n  shards:\n" + entry + entry)
    with pytest.raises(ValueError, match=rf"params.yaml: key '{KEYS[0]}' is given twice"):
        load_params(tmp_path)  # yaml.safe_load would keep one silently; DVC refuses it too

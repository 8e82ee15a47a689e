"""One dataset's change re-runs that dataset's stage only, in DVC and in Dagster alike."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import dagster as dg

from neurosam3d.demo import sync_samples
from pipelines.assets import data
from pipelines.partitions import DATASETS
from pipelines.resources import DvcResource, local_resources
from tests.pipelines.conftest import REPO, SMALL_DATASET, SMALL_RAW, make_project

OTHER, OTHER_RAW = "sample_brats_style_t2", "brats_style"


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: (mtime in ns, SHA-256)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _prepare_in_dagster(project: Path, instance: dg.DagsterInstance, key: str) -> bool:
    """Materialise one partition; whether its DVC stage ran (False: up to date, skipped)."""
    result = dg.materialize(
        [data.raw_dataset, data.prepared_dataset],
        partition_key=key,
        instance=instance,
        resources=local_resources(project),
    )
    assert result.success
    return bool(result.asset_materializations_for_node("prepared_dataset")[1].metadata["ran"].value)


def test_changing_one_dataset_config_reruns_only_its_stage(tmp_path: Path) -> None:
    datasets = {SMALL_DATASET: SMALL_RAW, OTHER: OTHER_RAW}
    project = make_project(tmp_path / "project", {"prepare": {"dataset": datasets}})
    shutil.copytree(REPO / "samples" / OTHER_RAW, project / "samples" / OTHER_RAW)
    sync_samples(project / "samples", project / "data")
    dvc = DvcResource(root=str(project))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(DATASETS.name, [SMALL_DATASET, OTHER])
    assert _prepare_in_dagster(project, instance, SMALL_DATASET)
    assert _prepare_in_dagster(project, instance, OTHER)
    assert not {f"prepare@{SMALL_DATASET}", f"prepare@{OTHER}"} & set(dvc.stale_stages())

    roots = {key: project / "work" / "data" / "datasets" / key for key in (SMALL_DATASET, OTHER)}
    before = {key: _snapshot(root) for key, root in roots.items()}
    config = project / "configs" / "datasets" / f"{SMALL_DATASET}.yaml"
    config.write_text(config.read_text().replace("1: spinal_cord", "1: cord"))

    stale = set(dvc.stale_stages())
    assert f"prepare@{SMALL_DATASET}" in stale and f"prepare@{OTHER}" not in stale
    assert not _prepare_in_dagster(project, instance, OTHER)  # Dagster agrees: skipped
    assert _prepare_in_dagster(project, instance, SMALL_DATASET)
    assert _snapshot(roots[OTHER]) == before[OTHER]  # untouched: same bytes, same mtimes
    tree = roots[SMALL_DATASET] / "SCTPaired"
    assert (tree / "labelsTr" / "cord").is_dir() and not (
        tree / "labelsTr" / "spinal_cord"
    ).exists()
    assert not {f"prepare@{SMALL_DATASET}", f"prepare@{OTHER}"} & set(dvc.stale_stages())

    # `dvc repro` the same way: the other dataset's config changes, only its stage runs.
    before = {key: _snapshot(root) for key, root in roots.items()}
    config = project / "configs" / "datasets" / f"{OTHER}.yaml"
    config.write_text(config.read_text().replace("5: spinal_cord_c5", "5: cord_c5"))
    repro = subprocess.run(
        [str(REPO / ".venv" / "bin" / "dvc"), "repro", "combine"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"Running stage 'prepare@{OTHER}'" in repro.stdout
    assert f"Running stage 'prepare@{SMALL_DATASET}'" not in repro.stdout
    assert _snapshot(roots[SMALL_DATASET]) == before[SMALL_DATASET]
    assert (roots[OTHER] / "SCTBraTSStyle" / "labelsTr" / "cord_c5").is_dir()
    combined = (project / "work" / "data" / "manifests" / "SCTBraTSStyle_Tr.parquet").read_bytes()
    assert b"cord_c5" in combined

"""One dataset's change re-runs that dataset's stage only, in DVC and in Dagster alike; then a
teammate's fresh clone gets the committed outputs with ``dvc pull`` and ``dvc status`` is clean
(one project for both: preparing it is what costs)."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import dagster as dg

from neurosam3d.demo import sync_samples
from pipelines.assets import data
from pipelines.partitions import SHARDS
from pipelines.resources import DvcResource, local_resources
from tests.pipelines.conftest import REPO, SMALL_DATASET, SMALL_RAW, make_project, whole

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


DVC = str(REPO / ".venv" / "bin" / "dvc")


def _run(*args: str, cwd: Path) -> str:
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    command = [*git, *args[1:]] if args[0] == "git" else [DVC, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_one_dataset_change_reruns_only_its_stage_and_a_fresh_clone_pulls(tmp_path: Path) -> None:
    shards = whole(SMALL_DATASET, SMALL_RAW) | whole(OTHER, OTHER_RAW)
    project = make_project(tmp_path / "project", {"prepare": {"shards": shards}})
    shutil.copytree(REPO / "samples" / OTHER_RAW, project / "samples" / OTHER_RAW)
    sync_samples(project / "samples", project / "data")
    _run("add", "--quiet", "data", cwd=project)
    dvc = DvcResource(root=str(project))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS.name, [SMALL_DATASET, OTHER])
    assert _prepare_in_dagster(project, instance, SMALL_DATASET)
    assert _prepare_in_dagster(project, instance, OTHER)
    assert not {f"prepare@{SMALL_DATASET}", f"prepare@{OTHER}"} & set(dvc.stale_stages())

    roots = {key: project / "work" / "data" / "datasets" / key for key in (SMALL_DATASET, OTHER)}
    mask = roots[SMALL_DATASET] / "SCTPaired" / "labelsTr" / "spinal_cord" / "sct_t2.nii.gz"
    assert mask.stat().st_nlink == 2  # stored once: the workspace file is linked to the cache
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
    repro = _run("repro", "combine", cwd=project)
    assert f"Running stage 'prepare@{OTHER}'" in repro
    assert f"Running stage 'prepare@{SMALL_DATASET}'" not in repro
    assert _snapshot(roots[SMALL_DATASET]) == before[SMALL_DATASET]
    assert (roots[OTHER] / "SCTBraTSStyle" / "labelsTr" / "cord_c5").is_dir()
    combined = (project / "work" / "data" / "manifests" / "SCTBraTSStyle_Tr.parquet").read_bytes()
    assert b"cord_c5" in combined

    # A teammate clones the commit and pulls its outputs (the later stages never ran here).
    _run("remote", "add", "--force", "--default", "team", str(tmp_path / "remote"), cwd=project)
    _run("push", "--quiet", cwd=project)
    _run("git", "add", "-A", cwd=project)
    _run("git", "commit", "--quiet", "-m", "pipeline outputs", cwd=project)
    assert "dvc.lock" in _run("git", "ls-files", cwd=project).split()
    clone = tmp_path / "clone"
    _run("git", "clone", "--quiet", str(project), str(clone), cwd=tmp_path)
    assert not (clone / "work").exists()
    _run("pull", "--quiet", "--with-deps", "combine", cwd=clone)
    assert "Data and pipelines are up to date." in _run(
        "status", "--with-deps", "combine", cwd=clone
    )
    for name in ("manifest.parquet", "manifests/SCTPaired_Val.parquet"):
        pulled = clone / "work" / "data" / name
        assert pulled.read_bytes() == (project / "work" / "data" / name).read_bytes()
    relabelled = tree / "labelsTr" / "cord" / "sct_t2.nii.gz"
    assert (clone / relabelled.relative_to(project)).read_bytes() == relabelled.read_bytes()

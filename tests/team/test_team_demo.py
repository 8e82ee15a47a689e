"""The team deployment, end to end on real services (``make test-team``; also run by ``.ci/run``).

In a copy of this checkout (its own git repository): ``make team-up`` starts PostgreSQL,
SeaweedFS (S3), Redis, the MLflow server, the Dagster webserver + daemon and two Celery workers
on 127.0.0.1 (ports offset from the defaults, so a running ``make team-up`` is not disturbed);
``NEUROSAM3D_DEPLOYMENT=team make demo`` then runs the pipeline as daemon-launched Dagster runs
whose steps the Celery workers execute; the commit's ``dvc.lock`` is committed; a second clone with
only the team settings (``.team/env``) gets the data with ``dvc pull`` and segments a sample with
``models:/neurosam3d@champion`` from the server. ``make team-down`` stops everything.

Reduced demo configuration (to stay within 10 minutes on 2 cores): 10 training steps instead of
params.yaml's 400, one validation (after step 10) on 2 crops. One dataset is prepared in three
shards (fan-out: three daemon-launched runs, one per shard), merged by the combined manifest. Skips, saying why, only when a service
cannot start (``deploy/team/up.sh`` fails, e.g. PostgreSQL or Redis not installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: ports of this test's services: the defaults + 100 (deploy/team/common.sh)
PORTS = {
    "PG_PORT": 15532,
    "S3_PORT": 18433,
    "WEED_MASTER_PORT": 19433,
    "WEED_VOLUME_PORT": 18180,
    "WEED_FILER_PORT": 18988,
    "REDIS_PORT": 16479,
    "MLFLOW_PORT": 15100,
    "DAGSTER_PORT": 13100,
}
pytestmark = pytest.mark.team
#: `make` that never runs `make install` in the copy: the copy shares this checkout's .venv, and
#: an install there would point the editable package at the copy (deleted afterwards)
MAKE = ("make", "-o", "install")
SAMPLE = "samples/nnUNet_raw/Dataset001_TotalSegCT/imagesTr/s0002_0000.nii.gz"
#: the dataset prepared in shards (fan-out): cases s0001 and s0002 fall into shards 2 and 3 of
#: 3 (sha256 rule, neurosam3d/data/shards.py), so shard 1 is empty
SHARDED, SHARD_COUNT = "sample_totalsegmentator", 3


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def copy_checkout(dest: Path) -> Path:
    """This checkout's files (tracked and untracked, not ignored; mtimes kept, so `make` sees
    the venv as installed) as a new git repository with one commit, sharing ``.venv``."""
    files = _git(REPO, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    _git(dest, "init", "-q", "-b", "main")
    (dest / ".git" / "info" / "exclude").write_text(
        "/.venv\n"
    )  # a link: .gitignore's .venv/ misses it
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "checkout")
    return dest


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    """``args`` in ``cwd`` with ``env``, output captured (a ``CompletedProcess``)."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def team_settings(env_file: Path) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines of ``.team/env``."""
    found = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = value
    return found


def _base_env() -> dict[str, str]:
    drop = ("MLFLOW_", "DAGSTER_", "NEUROSAM3D_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {f"NEUROSAM3D_TEAM_{k}": str(v) for k, v in PORTS.items()}


@pytest.fixture(scope="module")
def team_project() -> Iterator[Path]:
    """A copy of the checkout with the team services up (stopped and deleted afterwards).

    Not under pytest's temporary folder (mode 700 for root): PostgreSQL runs as its own user,
    which must reach its data folder."""
    top = Path(tempfile.mkdtemp(prefix="neurosam3d-team-"))
    top.chmod(0o755)
    project = copy_checkout(top / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    shards = params["prepare"]["shards"]
    whole = shards.pop(SHARDED)
    for index in range(1, SHARD_COUNT + 1):
        shards[f"{SHARDED}-{index}of{SHARD_COUNT}"] = whole | {"shard": f"{index}/{SHARD_COUNT}"}
    params["train"]["set"] = [
        "trainer.max_steps=10",
        "trainer.val_every_n_steps=10",
        "data.val_max_items=2",
    ]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(project, "commit", "-q", "-am", "reduced demo configuration")
    env = _base_env()
    up = _run([*MAKE, "team-up"], project, env)
    try:
        if up.returncode != 0:
            pytest.skip(f"a team service could not start:\n{(up.stdout + up.stderr)[-3000:]}")
        yield project
    finally:
        subprocess.run([*MAKE, "team-down"], cwd=project, env=env, capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def test_team_demo_then_second_clone_pulls_and_segments_with_the_champion(
    team_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    project = team_project
    settings = team_settings(project / ".team" / "env")
    env = _base_env() | {"NEUROSAM3D_DEPLOYMENT": "team"}
    demo = _run([*MAKE, "demo"], project, env, timeout=1500)
    log = (project / "work" / "logs" / "demo-materialize.log").read_text(errors="replace")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-5000:] + log[-5000:]

    # the runs were queued and launched by the daemon, their steps run by the Celery workers
    import dagster as dg

    for name, value in settings.items():
        if name.startswith("DAGSTER_PG"):
            monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(settings["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        jobs = sorted(r.job_name for r in runs)
        assert jobs == ["prepare_dataset"] * (5 + SHARD_COUNT) + ["retrain"], jobs
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        prepared = sorted(
            r.tags["dagster/partition"] for r in runs if r.job_name == "prepare_dataset"
        )
        assert [p for p in prepared if p.startswith(f"{SHARDED}-")] == [
            f"{SHARDED}-{i}of{SHARD_COUNT}" for i in range(1, SHARD_COUNT + 1)
        ], prepared
        for run in runs:  # each went through the queue and was launched by the daemon
            for kind in (dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING):
                assert instance.all_logs(run.run_id, of_type=kind), (run.job_name, kind)
    workers = "".join(
        (project / ".team" / "logs" / f"celery-worker-{n}.log").read_text() for n in (1, 2)
    )
    assert "execute_plan" in workers and "succeeded" in workers
    # the combined manifest merged the shards: each case from its own shard's root
    import pandas as pd

    manifest = pd.read_parquet(project / "work" / "data" / "manifest.parquet")
    roots = {
        case: {path.split("/")[1] for path in rows.mask_path}
        for case, rows in manifest[manifest.dataset == "TotalSegmentatorSample"].groupby("case_id")
    }
    assert roots == {
        "s0001": {f"{SHARDED}-2of{SHARD_COUNT}"},
        "s0002": {f"{SHARDED}-3of{SHARD_COUNT}"},
    }, roots

    # MLflow server: the run's artifacts are on S3, the champion is registered there
    uri = settings["MLFLOW_TRACKING_URI"]
    assert uri.startswith("http://127.0.0.1:")
    client = MlflowClient(uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("neurosam3d", "champion")
    run = client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    s3 = _run(
        [str(BIN / "python"), "-c", LIST_S3, settings["NEUROSAM3D_TEAM_BUCKET"]],
        project,
        _base_env() | settings,
    )
    keys = s3.stdout.split()
    assert any(k.startswith("mlflow/") and k.endswith("last.ckpt") for k in keys), s3.stderr
    assert any(k.startswith("dvc/files/md5/") for k in keys), s3.stderr

    # a second clone with only the team settings
    _git(project, "add", "dvc.lock", "data.dvc")
    _git(project, "commit", "-q", "--allow-empty", "-m", "team demo: dvc.lock, data.dvc")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(project), str(clone))
    (clone / ".venv").symlink_to(REPO / ".venv")
    clone_env = _base_env() | {
        k: v for k, v in settings.items() if k.startswith(("AWS_", "MLFLOW_"))
    }
    dvc = str(BIN / "dvc")
    pulled = _run([dvc, "pull", "--remote", "team", "--quiet"], clone, clone_env)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert (clone / "work" / "data" / "manifest.parquet").is_file()
    status = _run([dvc, "status", "--quiet"], clone, clone_env)
    assert status.returncode == 0 and not status.stdout.strip(), status.stdout

    segmented = _run([str(BIN / "python"), "-c", SEGMENT, SAMPLE, "81,58,19,+"], clone, clone_env)
    assert segmented.returncode == 0, segmented.stderr[-3000:]
    result = json.loads(segmented.stdout.strip().splitlines()[-1])
    assert result["version"] == champion.version
    assert result["shape"] == result["image_shape"]  # a mask on exactly the image's grid
    # the served champion is the pipeline's model: the same mask as the checkpoint dvc pulled
    # (10 training steps may well segment nothing, so the voxel count is not the check)
    assert result["same_as_pulled_checkpoint"], result


#: list the team bucket's keys (S3 credentials and endpoint from the environment)
LIST_S3 = """
import sys, boto3
pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1])
print("\\n".join(o["Key"] for p in pages for o in p.get("Contents", [])))
"""

#: load @champion from the tracking server and segment one sample with one click
SEGMENT = """
import base64, gzip, io, json, sys
import mlflow, nibabel as nib, numpy as np, pandas as pd
from mlflow import MlflowClient
image, points = sys.argv[1], sys.argv[2]
model = mlflow.pyfunc.load_model("models:/neurosam3d@champion")
version = MlflowClient().get_model_version_by_alias("neurosam3d", "champion").version
out = model.predict(pd.DataFrame({"image": [image], "points": [points]}))
row = out.iloc[0] if hasattr(out, "iloc") else out[0]
mask = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(row["mask"])))
data = np.asanyarray(mask.dataobj)
from neurosam3d.inference import predict_file
from neurosam3d.model import load_checkpoint
local = predict_file(load_checkpoint("work/train/checkpoints/last.ckpt").eval(), image,
                     [points], "local-mask.nii.gz")
same = bool(np.array_equal(np.asarray(local.mask) > 0, data > 0))
print(json.dumps({"version": version, "voxels": int((data > 0).sum()), "shape": list(data.shape),
                  "image_shape": list(nib.load(image).shape), "same_as_pulled_checkpoint": same}))
"""

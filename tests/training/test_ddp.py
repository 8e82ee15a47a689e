"""DDP on two CPU processes (gloo), as CI can run it: `neurosam3d train` under `torchrun` with
two nodes rendezvousing on localhost, then resumed under Lightning's own launcher
(``trainer.devices=2``). Checks one MLflow run for both, a disjoint training shard per rank, and
a checkpoint that resumes (step count continues, the same run gets the new metrics).

Each launch is a real process tree (torchrun/Lightning start the ranks), so it runs the CLI as a
subprocess; about a minute in all on two cores.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.test_train_run import CONFIG, _fast

BIN = Path(sys.executable).parent
SHARD_LINE = re.compile(
    r"training shard: rank (\d+) of (\d+), block (\d+), (\d+) draws per epoch, keys (\w+)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RANK", "LOCAL_RANK"))
    }
    env.update(
        NEUROSAM3D_HOME=str(home),
        OMP_NUM_THREADS="1",
        MASTER_ADDR="127.0.0.1",
        GLOO_SOCKET_IFNAME="lo",  # both ranks on this machine: the loopback interface
    )
    return env


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _shards(output: str) -> dict[int, tuple[int, int, int, str]]:
    """``rank -> (world, block, draws, digest)`` from the ranks' log lines (last one per rank)."""
    found = {}
    for match in SHARD_LINE.finditer(output):
        rank, world, block, draws, digest = match.groups()
        found[int(rank)] = (int(world), int(block), int(draws), digest)
    return found


def _expected_digests(manifest: Path, overrides: list[str], world: int, skip: int) -> list[str]:
    """The shard digest each rank must draw (block 0 from key ``skip`` on), from the sampler in
    this process; checks on the way that the ranks' shards are disjoint."""
    from neurosam3d.training import load_config
    from neurosam3d.training.datamodule import ManifestDataModule
    from neurosam3d.training.datasets import BalancedSampler

    cfg = load_config(CONFIG, overrides)
    data = ManifestDataModule(cfg.data, cfg.model.architecture().img_size, cfg.seed)
    data.setup("fit")
    samplers = [
        BalancedSampler(
            data.weights,
            cfg.data.samples_per_epoch,
            cfg.seed,
            rank=r,
            world_size=world,
            skip=skip,
        )
        for r in range(world)
    ]
    keys = [set(s) for s in samplers]
    assert not keys[0] & keys[1], "the shards of two ranks overlap"
    assert all(len(k) == cfg.data.samples_per_epoch - skip for k in keys)
    return [s.digest() for s in samplers]


def test_ddp_two_processes_one_run_disjoint_shards_and_resume(
    ct_manifest: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    home, out = tmp_path / "home", tmp_path / "home" / "train"
    home.mkdir()
    common = [*_fast(ct_manifest), "data.samples_per_epoch=8", "data.num_workers=0"]
    common += ["trainer.validate_before_training=false"]  # 2 validation crops: one per rank
    first = [*common, "trainer.max_steps=2", "trainer.num_nodes=2", "trainer.devices=1"]
    first += ["trainer.strategy=ddp", "trainer.accelerator=cpu"]
    train = [str(BIN / "neurosam3d"), "train", "--config", str(CONFIG), "--out", str(out)]

    # 1. two "nodes" of one process each, rendezvous on localhost (the README's --nnodes 2 line)
    port = _free_port()
    launchers = [
        subprocess.Popen(
            [
                str(BIN / "torchrun"),
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={node}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=ddp-test",
                *train,
                *_sets(first),
            ],
            cwd=home,
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in launchers]
    failed = [node for node, proc in enumerate(launchers) if proc.returncode != 0]
    assert not failed, "\n".join(f"node {n}:\n{outputs[n][-3000:]}" for n in failed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 2

    shards = _shards("\n".join(outputs))
    assert sorted(shards) == [0, 1], shards
    expected = _expected_digests(ct_manifest, common, world=2, skip=0)
    for rank in (0, 1):
        assert shards[rank] == (2, 0, 8, expected[rank])

    client = MlflowClient(summary["tracking_uri"])
    experiment = client.get_experiment_by_name("neurosam3d-demo")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [summary["run_id"]]  # rank 1 created no run
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and not [n for n in checkpoints if n.startswith(".")]

    # 2. resume the same run to step 4 with Lightning's own launcher: two processes on one node
    resumed = [*common, "trainer.max_steps=4", "trainer.devices=2", "trainer.strategy=ddp"]
    resumed += ["trainer.accelerator=cpu"]
    env = _env(home) | {"MASTER_PORT": str(_free_port())}
    args = [*train, "--resume", str(out / "checkpoints" / "last.ckpt"), *_sets(resumed)]
    done = subprocess.run(
        args,
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    after = json.loads((out / "summary.json").read_text())
    assert after["global_step"] == 4 and after["run_id"] == summary["run_id"]
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [
        summary["run_id"]
    ]
    steps = [m.step for m in client.get_metric_history(summary["run_id"], "train/loss")]
    assert max(steps) >= 3  # the resumed steps were logged to the same run
    shards = _shards(done.stderr)
    assert sorted(shards) == [0, 1], done.stderr[-3000:]
    expected = _expected_digests(ct_manifest, common, world=2, skip=2)  # 2 steps of batch 1 done
    for rank in (0, 1):
        assert shards[rank] == (2, 0, 8, expected[rank])


def test_fewer_validation_crops_than_ranks_is_refused(
    ct_manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurosam3d.training import load_config
    from neurosam3d.training.datamodule import ManifestDataModule

    cfg = load_config(CONFIG, [*_fast(ct_manifest), "data.val_max_items=1"])
    data = ManifestDataModule(cfg.data, cfg.model.architecture().img_size, cfg.seed)
    data.setup("fit")
    monkeypatch.setattr(data, "_rank_world", lambda: (1, 2))
    with pytest.raises(ValueError, match=r"1 validation crop\(s\) for 2 DDP ranks"):
        data.val_dataloader()
    monkeypatch.setattr(data, "_rank_world", lambda: (0, 1))
    assert len(data.val_dataloader()) == 1

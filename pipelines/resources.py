"""Typed resources: project paths, MLflow and DVC, with a local and a team configuration.

Local (the embedded default): the project folder, MLflow on SQLite under ``mlflow/``, DVC with the
project's ``.dvc-remote/``. Team: the same code with a tracking server (Postgres backend, S3
artifacts) and an S3 DVC remote, chosen by configuration only (``NEUROSAM3D_DEPLOYMENT=team``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from pipelines.params import ShardEntry, load_params, shard_entries

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# One DVC call at a time per workspace: this lock for threads, a flock for processes.
_THREAD_LOCK = threading.Lock()


class ProjectResource(dg.ConfigurableResource):
    """The project folder (absolute) holding params.yaml, dvc.yaml, data/ and work/."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    def params(self) -> dict[str, Any]:
        return load_params(self.path)

    def shards(self) -> list[str]:
        """The partition keys (keys of ``prepare.shards``, checked by
        :func:`~pipelines.params.shard_entries`): one DVC stage ``prepare@<key>`` each."""
        return list(shard_entries(self.params()))

    def shard(self, key: str) -> ShardEntry:
        """The ``prepare.shards`` entry of partition ``key`` (``ValueError`` when not listed)."""
        entries = shard_entries(self.params())
        if key not in entries:
            raise ValueError(
                f"params.yaml: prepare.shards has no entry {key!r} (it lists {', '.join(entries)})"
            )
        return entries[key]

    def dataset_config_path(self, key: str) -> Path:
        """The ``configs/datasets/<dataset>.yaml`` of partition ``key`` (what stage
        ``prepare@<key>`` reads and depends on)."""
        from neurosam3d.io.paths import check_name

        dataset = check_name(self.shard(key).dataset, "dataset key")
        return self.path / "configs" / "datasets" / f"{dataset}.yaml"

    def dataset_name(self, key: str) -> str:
        """The name in the dataset config of partition ``key`` (its folder in the label tree)."""
        from neurosam3d.data.config import load_dataset_config

        return load_dataset_config(self.dataset_config_path(key)).name

    def raw_folder(self, key: str) -> Path:
        """The raw folder of partition ``key``'s dataset: its entry's ``raw`` under
        ``prepare.raw-root``, which must be the dataset config's ``root`` (DVC's stage depends on
        the one, the library reads the other); a mismatch raises ``ValueError`` naming both."""
        from neurosam3d.data.config import load_dataset_config

        entry = self.shard(key)
        root = str(load_dataset_config(self.dataset_config_path(key)).root)
        if Path(entry.raw) != Path(root):
            raise ValueError(
                f"params.yaml: prepare.shards.{key}.raw is {entry.raw!r} but "
                f"configs/datasets/{entry.dataset}.yaml has root {root!r}: make them the same"
            )
        return self.path / self.params()["prepare"]["raw-root"] / entry.raw

    def shard_root(self, key: str) -> Path:
        """Where partition ``key`` is prepared (its own ``prepare --out`` root)."""
        return self.path / self.params()["prepare"]["out"] / key

    def combined_root(self) -> Path:
        """The label-tree root of the combined manifests (``combine.out``)."""
        return self.path / self.params()["combine"]["out"]

    def env(self) -> dict[str, str]:
        """Environment for stage subprocesses: the project folder the library resolves paths in."""
        return {"NEUROSAM3D_HOME": self.root}


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry.

    ``tracking_uri`` unset means the library's resolution (``$MLFLOW_TRACKING_URI``, else the
    embedded ``sqlite:///<project>/mlflow/mlflow.db``). ``ui_url`` only builds links.
    ``lock_dir`` is where registrations serialise (``NEUROSAM3D_LOCK_DIR`` of the stage commands,
    see :mod:`neurosam3d.registry.lock`); promotions need no folder, the registry arbitrates them
    (:mod:`neurosam3d.registry.arbiter`).
    """

    tracking_uri: str | None = None
    ui_url: str = "http://127.0.0.1:5000"
    lock_dir: str | None = None

    def uri(self) -> str:
        from neurosam3d.tracking import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking_uri)

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        uri = self.uri()
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def env(self) -> dict[str, str]:
        found = {"MLFLOW_TRACKING_URI": self.uri()}
        return found | ({"NEUROSAM3D_LOCK_DIR": self.lock_dir} if self.lock_dir else {})

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def artifact_url(self, experiment_id: str, run_id: str, path: str) -> str:
        """The MLflow UI's page of one artifact of a run (``path`` relative to its root)."""
        return f"{self.run_url(experiment_id, run_id)}/artifacts/{path}"

    def model_version_url(self, name: str, version: str) -> str:
        return f"{self.ui_url}/#/models/{name}/versions/{version}"


class DvcResource(dg.ConfigurableResource):
    """DVC on the project workspace; every call holds a process-level lock.

    DVC takes a repository lock and gives up after a short wait when another DVC command holds
    it (a training-length `dvc` call would make the next one fail), so this
    resource serialises its own calls across threads and processes (an exclusive ``flock`` on
    ``.dvc/tmp/neurosam3d-dagster.lock``) instead of letting two steps collide.
    ``remote`` (a name from ``.dvc/config``) receives the cache after each commit when ``push``.
    """

    root: str
    remote: str = "local"
    push: bool = False

    @contextmanager
    def _locked(self) -> Iterator[None]:
        path = Path(self.root) / ".dvc" / "tmp" / "neurosam3d-dagster.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with _THREAD_LOCK, path.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def _repo(self) -> Iterator[Any]:
        from dvc.repo import Repo

        with self._locked(), Repo(self.root) as repo:
            yield repo

    def _target(self, stage: str) -> str:
        """``stage`` addressed absolutely: DVC resolves bare names against the current directory."""
        return f"{Path(self.root) / 'dvc.yaml'}:{stage}"

    def stage_command(self, stage: str) -> str:
        """The shell command of ``stage`` with ``params.yaml`` substituted, exactly as DVC runs it."""
        with self._repo() as repo:
            (found,) = repo.stage.collect(self._target(stage))
            return str(found.cmd)

    def is_up_to_date(self, stage: str) -> bool:
        """True when ``dvc status`` reports nothing for ``stage`` alone (deps, params, outs)."""
        with self._repo() as repo:
            return not repo.status(targets=[self._target(stage)])

    def stale_stages(self) -> list[str]:
        """The stages ``dvc status`` reports (changed deps, params, command or outputs), by name
        (``.dvc`` files by their path in the project)."""
        with self._repo() as repo:
            found = repo.status()
        root = Path(self.root).resolve()
        names = []
        for key in found:
            path, _, name = key.rpartition(":") if ".yaml:" in key else (key, "", "")
            names.append(name or (Path.cwd() / path).resolve().relative_to(root).as_posix())
        return sorted(names)

    def remove_outs(self, stage: str) -> None:
        """Delete ``stage``'s non-persistent outputs before it runs, as ``dvc repro`` does, so
        that a tool writing a file in place never writes through a link into the DVC cache.
        Persistent outputs stay: their writer (``neurosam3d prepare``) replaces files by
        rename, which leaves cached files intact."""
        with self._repo() as repo:
            (found,) = repo.stage.collect(self._target(stage))
            for out in found.outs:
                if not out.persist and out.exists:
                    out.remove(ignore_remove=False)

    def _cli(self, *args: str) -> None:
        """Run ``dvc ARGS`` in the workspace (the CLI resolves targets against its cwd)."""
        with self._locked():
            done = subprocess.run(
                [sys.executable, "-m", "dvc", *args],
                cwd=self.root,
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"dvc {' '.join(args)} failed in {self.root}:\n{done.stderr}")

    def commit(self, stage: str) -> None:
        """``dvc commit``: record ``stage``'s deps, params and outs in dvc.lock and the cache."""
        self._cli("commit", "--force", "--quiet", stage)
        if self.push:
            self._cli("push", "--quiet", "--remote", self.remote, stage)

    def folder_hash(self, path: Path) -> str:
        """DVC's md5 of a file or folder (``<md5>.dir`` for folders), as dvc.lock would record it."""
        from dvc_data.hashfile.build import build

        with self._repo() as repo:
            _, _, obj = build(repo.cache.local, str(path), repo.fs, "md5", dry_run=True)
            return str(obj.hash_info.value)

    def graph(self) -> list[tuple[str, str]]:
        """Edges (upstream stage, downstream stage) of the pipeline in ``dvc.yaml`` and ``*.dvc``."""
        root = Path(self.root)

        def name(stage: Any) -> str:
            return getattr(stage, "name", None) or Path(stage.path).relative_to(root).as_posix()

        with self._repo() as repo:
            return sorted((name(b), name(a)) for a, b in repo.index.graph.edges)


def local_resources(project: Path) -> dict[str, dg.ConfigurableResource]:
    """The embedded default: everything inside ``project``."""
    root = str(project.resolve())
    return {
        "project": ProjectResource(root=root),
        "mlflow": MlflowResource(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")),
        "dvc": DvcResource(root=root, remote="local", push=False),
    }


def team_resources(project: Path) -> dict[str, dg.ConfigurableResource]:
    """A team deployment: MLflow server (Postgres + S3) and an S3 DVC remote named ``team``."""
    root = str(project.resolve())
    return {
        "project": ProjectResource(root=root),
        "mlflow": MlflowResource(
            tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"),
            ui_url=dg.EnvVar("MLFLOW_UI_URL"),
            lock_dir=dg.EnvVar("NEUROSAM3D_LOCK_DIR"),
        ),
        "dvc": DvcResource(root=root, remote="team", push=True),
    }

"""``make demo``: the whole pipeline on the shipped samples, then how to look at the results.

1. ``samples/`` (the real raw sample datasets, in git) is copied into ``data/`` byte for byte
   (sorted, deterministic) and ``dvc add data`` records it: the hash in ``data.dvc`` depends only
   on file contents and relative paths, so every fresh clone gets the committed ``data.dvc``.
2. Dagster materialises every asset on the embedded instance (``DAGSTER_HOME=.dagster_home``):
   per dataset the raw data version, label tree and manifests; then the combined manifest, a
   short training with the tiny CPU configuration, evaluation with the category tables,
   registration in MLflow (``mlflow/``) and gated promotion to ``@champion``.
3. ``dvc status`` must then be clean (Dagster ran the DVC stages' own commands and committed
   them); the data and outputs are pushed to the project's local DVC remote (``.dvc-remote/``).

With ``NEUROSAM3D_DEPLOYMENT=team`` (and the settings of ``make team-up``, ``.team/env``, in the
environment) step 2 instead submits the runs to the team's Dagster webserver, whose daemon
launches them (``python -m pipelines.submit``), MLflow is the team's server, and step 3 pushes to
the DVC remote ``team`` (S3).

Orchestrators run as subprocesses (``python -m pipelines.materialize`` / ``pipelines.submit``,
``dvc``): the library itself imports neither Dagster nor DVC.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parents[1]
#: Files of samples/ that are tooling, not data.
_NOT_DATA = ("*.py", "__pycache__")


def sync_samples(samples: Path, data: Path) -> int:
    """Make ``data`` hold exactly the data files of ``samples`` (same bytes); return the file count."""
    wanted = {
        p.relative_to(samples)
        for p in samples.rglob("*")
        if p.is_file() and not any(p.match(pattern) or pattern in p.parts for pattern in _NOT_DATA)
    }
    for path in sorted(data.rglob("*"), reverse=True) if data.exists() else []:
        relative = path.relative_to(data)
        if path.is_file() and relative not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for relative in sorted(wanted):
        source, target = samples / relative, data / relative
        if target.is_file() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return len(wanted)


#: what the team demo needs from the environment (``.team/env`` of ``make team-up``)
TEAM_SETTINGS = ("DAGSTER_HOME", "DAGSTER_WEBSERVER_URL", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL")


def team_environment(project: Path) -> dict[str, str]:
    """The team deployment's settings from the environment (``source .team/env``)."""
    missing = [name for name in TEAM_SETTINGS if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"NEUROSAM3D_DEPLOYMENT=team needs {', '.join(missing)}: run `make team-up`, then "
            "`source .team/env` (make demo does that when .team/env exists)"
        )
    env = {**os.environ, "NEUROSAM3D_HOME": str(project)}
    env["PATH"] = f"{project / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def demo_environment(project: Path) -> dict[str, str]:
    """The embedded defaults: project folder, DAGSTER_HOME inside it, MLflow under mlflow/."""
    from neurosam3d.tracking import default_tracking_uri, resolve_tracking_uri

    home = project / ".dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(project / "pipelines" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "NEUROSAM3D_HOME": str(project), "DAGSTER_HOME": str(home)}
    env["MLFLOW_TRACKING_URI"] = resolve_tracking_uri(
        os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(project)
    )
    env["PATH"] = f"{project / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


#: A Dagster step event in the console log of an in-process run: ``... - <step> - STEP_START - ...``
_STEP_EVENT = re.compile(
    r" - (?P<step>[\w.\[\]-]+) - (?P<event>STEP_START|STEP_SUCCESS|STEP_FAILURE) - "
)
#: Our own log lines: ``<time> <LEVEL> <logger>: <message>`` from neurosam3d.* and pipelines.*
_OUR_LOG = re.compile(
    r"^\S+ \S+ (?P<level>INFO|WARNING|ERROR) (?P<name>(neurosam3d|pipelines)[\w.]*): (?P<msg>.*)$"
)
_STEP_WORDS = {"STEP_START": "started", "STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}


def progress_of(line: str) -> str | None:
    """The short progress line to show for one line of the orchestrator's log, or None.

    Shown: each Dagster step's start, end and failure (``trained_model: started``), and every
    INFO/WARNING/ERROR line of our own loggers (training steps, prepared cases, promotions)."""
    event = _STEP_EVENT.search(line)
    if event:
        return f"{event['step']}: {_STEP_WORDS[event['event']]}"
    ours = _OUR_LOG.match(line.rstrip("\n"))
    if ours:
        level = "" if ours["level"] == "INFO" else f"{ours['level']}: "
        return f"  {level}{ours['msg']}"
    return None


def _stream(args: list[str], project: Path, env: dict[str, str], log_path: Path) -> None:
    """Run ``args``, writing all its output to ``log_path`` and showing its progress lines."""
    log.info("$ %s (full log: %s)", " ".join(args), log_path.relative_to(project))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (
        log_path.open("w", encoding="utf-8") as sink,
        subprocess.Popen(
            args,
            cwd=project,
            env={**env, "PYTHONUNBUFFERED": "1"},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            shown = progress_of(line)
            if shown is not None:
                minutes, seconds = divmod(int(time.monotonic() - started), 60)
                print(f"[{minutes:2d}:{seconds:02d}] {shown}", flush=True)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-20000:]
        sys.stderr.write(tail)
        raise RuntimeError(
            f"`{' '.join(args)}` failed with exit code {proc.returncode} (full log: {log_path})"
        )


def _run(args: list[str], project: Path, env: dict[str, str]) -> str:
    log.info("$ %s", " ".join(args))
    done = subprocess.run(args, cwd=project, env=env, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-5000:] + done.stderr[-20000:])
        raise RuntimeError(f"`{' '.join(args)}` failed with exit code {done.returncode}")
    return done.stdout


def prepare_data(project: Path, env: dict[str, str]) -> None:
    """Copy samples/ into data/ and ``dvc add`` it (a fresh clone's data.dvc then matches)."""
    files = sync_samples(project / "samples", project / "data")
    log.info("data/: %d files from samples/", files)
    _run([str(project / ".venv" / "bin" / "dvc"), "add", "--quiet", "data"], project, env)


def run_demo(
    project: Path = PROJECT, push: bool = True, deployment: str = "local"
) -> dict[str, str]:
    """Run the pipeline in ``project`` (``deployment``: ``local`` or ``team``); return what a
    user needs to look at it."""
    started = time.monotonic()
    team = deployment == "team"
    env = team_environment(project) if team else demo_environment(project)
    dvc = str(project / ".venv" / "bin" / "dvc")
    prepare_data(project, env)
    _stream(
        [sys.executable, "-m", "pipelines.submit" if team else "pipelines.materialize"],
        project,
        env,
        project / "work" / "logs" / "demo-materialize.log",
    )
    status = _run([dvc, "status", "--quiet"], project, env)
    if status.strip():
        raise RuntimeError(f"dvc status is not clean after the Dagster run:\n{status}")
    if push:
        _run([dvc, "push", "--quiet", *(["--remote", "team"] if team else [])], project, env)
    return {
        "minutes": f"{(time.monotonic() - started) / 60:.1f}",
        "dagster_home": env["DAGSTER_HOME"],
        "tracking_uri": env["MLFLOW_TRACKING_URI"],
    }


def results_summary(project: Path, tracking_uri: str) -> str:
    """What the run produced, in a few lines: learning, evaluation, the category table, champion."""
    import json

    from mlflow import MlflowClient

    params = _params(project)
    train = json.loads((project / params["train"]["out"] / "summary.json").read_text())
    evaluation = project / params["evaluate"]["out"]
    scores = json.loads((evaluation / "summary.json").read_text())
    registration = json.loads(
        (project / params["register"]["out"] / "registration.json").read_text()
    )
    name = registration["name"]
    champion = MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
        name, "champion"
    )

    def dice(values: dict[str, float]) -> str:
        return ", ".join(f"{k} click(s) {values[k]:.3f}" for k in sorted(values, key=int))

    lines = [
        f"Training ({train['global_step']} steps, MLflow run {train['run_id']}), "
        "validation Dice on fixed crops:",
        f"    untrained: {dice(train['baseline_val_dice'])}",
        f"    best:      {dice(train['val_dice'])}",
        f"Evaluation on held-out cases ({scores['targets']} targets, seed "
        f"{scores['protocol']['seed']}), mean Dice: {dice(scores['mean_dice'])}",
        "Dice (%) per anatomical category, in the layout of the SAM-Med3D README:",
        (evaluation / "tables" / "categories.md").read_text().rstrip(),
        f"Registered {name} version {registration['version']}; @champion is version "
        f"{champion.version}.",
    ]
    return "\n".join(lines)


def _params(project: Path) -> dict:
    import yaml

    return yaml.safe_load((project / "params.yaml").read_text())


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if sys.argv[1:] == ["--data-only"]:  # `make dvc-repro`: the data, then DVC runs the rest
        prepare_data(PROJECT, demo_environment(PROJECT))
        return
    deployment = os.environ.get("NEUROSAM3D_DEPLOYMENT", "local")
    result = run_demo(deployment=deployment)
    print("\n" + results_summary(PROJECT, result["tracking_uri"]))
    if deployment == "team":
        print(
            f"""
Team demo finished in {result["minutes"]} min: runs in the Dagster UI at
{os.environ["DAGSTER_WEBSERVER_URL"]}, the model in MLflow at {result["tracking_uri"]}, data and
outputs on the DVC remote `team` (dvc pull -r team in another clone with .team/env's settings).
"""
        )
        return
    print(
        f"""
Demo finished in {result["minutes"]} min: label trees and manifests in work/data, the model in
work/train, the evaluation tables in work/eval/tables, the registered model in MLflow.

  Dagster UI (assets, metadata, Dice tables, checks, runs):
      make dagster        then open http://127.0.0.1:3000
  MLflow UI (runs, model versions, @champion / @challenger):
      make mlflow-ui      then open http://127.0.0.1:5000
  DVC: dvc status (clean), dvc metrics show, dvc plots show, dvc repro (nothing to do)
  Promotion table:   .venv/bin/neurosam3d promote --model neurosam3d --dry-run
"""
    )


if __name__ == "__main__":
    main()

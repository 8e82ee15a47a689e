"""Register a trained model as an MLflow model version and mark it ``@challenger``.

What a version holds (logged into the training run, so model, metrics and evaluation sit in one
run): an MLflow ``pyfunc`` model (:class:`~neurosam3d.registry.pyfunc.PromptableSegmenter`: a NIfTI
image and clicks in, a mask out) whose artifacts are the weights (``weights.safetensors``, the
only checkpoint file in the model, which ``models:/NAME@ALIAS`` resolves to) and the
architecture (``config.json``); beside it in the run, the raw checkpoint in the SAM-Med3D release
format (``release/``), the evaluation's tables (``log_table``), plot and summary. Version tags:
data version, git commit, training-manifest hash, checkpoint hash, the preprocessing record
(``neurosam3d.preprocessing``, JSON; the weights file holds it too) and the evaluation scores the
promotion gate reads, with the evaluation manifest hash and protocol fingerprint
(:mod:`neurosam3d.registry.tags`).

A checkpoint whose training run is not in this tracking store (restored by ``dvc pull`` into a
clone with its own store: no ``summary.json``, or one naming another store) is logged into a new
run of the training's experiment, tagged ``neurosam3d.registered_checkpoint``.

Idempotent: a checkpoint already registered under ``name`` (same SHA-256) is not registered
again; its version gets the new evaluation's scores, is returned and made ``@challenger``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from neurosam3d.io.digest import file_sha256
from neurosam3d.registry import tags as T
from neurosam3d.registry.gate import EvalScores, TargetScore
from neurosam3d.registry.lock import registry_lock
from neurosam3d.registry.promotion import set_scores
from neurosam3d.transforms import Preprocessing

log = logging.getLogger(__name__)

#: Evaluation tables logged with ``log_table`` (MLflow caps a run at about 80 tables).
LOGGED_TABLES = ("categories", "by_category", "by_dataset", "by_modality", "by_class")
#: What the logged package code imports when the pyfunc loads and predicts (torchio: upstream's
#: per-crop normalisation of release models).
_REQUIREMENTS = (
    "torch",
    "numpy",
    "pandas",
    "nibabel",
    "safetensors",
    "scipy",
    "pyyaml",
    "isal",
    "torchio",
)


@dataclass(frozen=True)
class Registration:
    """The registered version (also written as ``registration.json`` by the CLI)."""

    name: str
    version: str
    run_id: str
    experiment_id: str
    model_uri: str
    checkpoint_sha256: str
    created: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def protocol_sha256(protocol: dict[str, Any]) -> str:
    """Fingerprint of an evaluation protocol (summary.json's ``protocol``): SHA-256 of its canonical
    JSON (sorted keys, no whitespace, numbers as floats so that ``1`` and ``1.0`` agree)."""

    def canonical(value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, dict):
            return {str(k): canonical(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [canonical(v) for v in value]
        return str(value)

    text = json.dumps(canonical(protocol), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def targets_from_results(results: Path, clicks: int) -> tuple[TargetScore, ...]:
    """Per-target Dice after ``clicks`` clicks from an evaluation's ``results.parquet`` (one
    model); empty when the file does not exist."""
    if not results.is_file():
        return ()
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    columns = ["dataset", "split", "case_id", "class_name", "category", "click", "dice"]
    table = pq.read_table(results, columns=columns)
    table = table.filter(pc.equal(table["click"], clicks)).to_pylist()
    return tuple(
        TargetScore(
            "/".join((r["dataset"], r["split"], r["case_id"], r["class_name"])),
            r["category"],
            float("nan") if r["dice"] is None else float(r["dice"]),
        )
        for r in table
    )


def scores_from_evaluation(evaluation_dir: Path) -> EvalScores:
    """The gate's view of an evaluation folder: ``summary.json`` plus the per-target Dice of
    ``results.parquet`` at the gate's clicks (for the paired bootstrap)."""
    scores = scores_from_summary(json.loads((evaluation_dir / "summary.json").read_text()))
    targets = targets_from_results(evaluation_dir / "results.parquet", scores.clicks)
    return replace(scores, targets=targets)


def scores_from_summary(summary: dict[str, Any]) -> EvalScores:
    """The gate's view of an evaluation ``summary.json`` (mean and per-category Dice at its gate
    clicks, manifest hash and protocol fingerprint; a summary without ``protocol`` has none)."""
    clicks = int(summary["gate_clicks"])
    protocol = summary.get("protocol")
    mean = summary["mean_dice"].get(str(clicks))
    return EvalScores(
        manifest_sha256=str(summary["manifest_sha256"]),
        clicks=clicks,
        mean=float("nan") if mean is None else float(mean),
        categories={
            str(k): float("nan") if v is None else float(v)
            for k, v in summary["category_dice"].items()
        },
        protocol_sha256=None if protocol is None else protocol_sha256(protocol),
    )


def _requirements() -> list[str]:
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def _existing(client: Any, name: str, checkpoint_sha256: str) -> Any | None:
    found = client.search_model_versions(
        f"name = '{name}' and tags.`{T.CHECKPOINT_SHA256}` = '{checkpoint_sha256}'"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


#: tag of a run created to register a checkpoint whose training run is not in this store
REGISTERED_CHECKPOINT_TAG = "neurosam3d.registered_checkpoint"


def _training_run(
    client: Any, tracking_uri: str, trained: dict[str, Any] | None, checkpoint: Path, digest: str
) -> tuple[str, str]:
    """``(run_id, experiment_id)`` to log the model into: the training run of ``trained`` (its
    ``summary.json``) when it lives in this store, else a new run created for the checkpoint."""
    from mlflow.exceptions import MlflowException

    from neurosam3d.tracking import get_or_create_experiment

    if trained is not None and trained.get("tracking_uri") == tracking_uri:
        try:
            client.get_run(str(trained["run_id"]))
            return str(trained["run_id"]), str(trained["experiment_id"])
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    config = checkpoint.resolve().parent.parent / "config.yaml"  # OUT/checkpoints/x.ckpt
    experiment = "neurosam3d"
    if config.is_file():
        import yaml

        experiment = ((yaml.safe_load(config.read_text()) or {}).get("tracking") or {}).get(
            "experiment"
        ) or experiment
    experiment_id = get_or_create_experiment(experiment, tracking_uri)
    run = client.create_run(
        experiment_id,
        run_name=f"register-{checkpoint.stem}",
        tags={REGISTERED_CHECKPOINT_TAG: digest},
    )
    client.set_terminated(run.info.run_id)
    log.warning(
        "the training run of %s is not in %s; its model is logged into new run %s",
        checkpoint,
        tracking_uri,
        run.info.run_id,
    )
    return run.info.run_id, experiment_id


def _export(checkpoint: Path, folder: Path) -> tuple[Path, Path, Path, Preprocessing]:
    """Weights (safetensors), architecture (JSON) and release-format checkpoint of
    ``checkpoint``, both checkpoints with its preprocessing record (returned too)."""
    from neurosam3d.model import (
        export_release,
        load_checkpoint,
        read_preprocessing,
        save_safetensors,
    )

    model = load_checkpoint(checkpoint)
    preprocessing, source = read_preprocessing(checkpoint)
    log.info("%s: preprocessing %s (%s)", checkpoint, preprocessing.describe(), source)
    weights = save_safetensors(model, folder / "weights.safetensors", preprocessing)
    config = folder / "config.json"
    config.write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
    release = export_release(
        model, folder / "release" / f"{checkpoint.stem}.pth", preprocessing=preprocessing
    )
    return weights, config, release, preprocessing


@contextlib.contextmanager
def _global_tracking_uri(mlflow: Any, uri: str) -> Iterator[None]:
    """MLflow's fluent API at ``uri`` for the block only: ``mlflow.set_tracking_uri`` also sets
    ``$MLFLOW_TRACKING_URI``, which would otherwise send later runs of this process (a
    training, another registration) to this store."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)  # None unsets the variable again


def _package_copy(folder: Path) -> Path:
    """A clean copy of this package (no ``__pycache__``) for the model's ``code_paths``."""
    import shutil

    import neurosam3d

    source = Path(neurosam3d.__file__).parent
    target = folder / "code" / "neurosam3d"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _log_evaluation(mlflow: Any, evaluation_dir: Path) -> None:
    import pandas as pd

    tables = evaluation_dir / "tables"
    for name in LOGGED_TABLES:
        csv = tables / f"{name}.csv"
        if csv.exists():
            mlflow.log_table(pd.read_csv(csv), artifact_file=f"evaluation/{name}.json")
    for path in [*sorted(evaluation_dir.glob("*.png")), evaluation_dir / "summary.json"]:
        mlflow.log_artifact(str(path), "evaluation")
    if tables.is_dir():
        mlflow.log_artifacts(str(tables), "evaluation/tables")


def register_model(
    *,
    tracking_uri: str,
    name: str,
    train_summary: Path | None,
    evaluation_dir: Path,
    lock_dir: Path,
    checkpoint: Path | None = None,
    data_version: str | None = None,
    git_commit: str | None = None,
) -> Registration:
    """Register ``checkpoint`` (default: the best one of the training run whose ``summary.json``
    is ``train_summary``) with its evaluation in ``evaluation_dir`` (``summary.json``, ``tables/``,
    plot); the version is logged into that training run (or a new one, see the module's doc).

    ``train_summary`` may be None or missing only when ``checkpoint`` is given."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from neurosam3d.registry.pyfunc import PromptableSegmenter
    from neurosam3d.windows.growth import DEFAULT_MAX_WINDOWS

    trained = None
    if train_summary is not None and train_summary.is_file():
        trained = json.loads(train_summary.read_text())
    elif checkpoint is None:
        raise FileNotFoundError(f"{train_summary}: training summary not found (give --checkpoint)")
    evaluation = scores_from_evaluation(evaluation_dir)
    checkpoint = checkpoint or Path(trained["best_checkpoint"])
    digest = file_sha256(checkpoint)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with registry_lock(lock_dir, name):
        try:
            client.create_registered_model(
                name, description="NeuroSAM3D promptable 3D segmentation"
            )
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        existing = _existing(client, name, digest)
        if existing is not None:
            version, created = str(existing.version), False
            run_id = str(existing.run_id)
            experiment_id = str(client.get_run(run_id).info.experiment_id)
            log.info("%s v%s already holds checkpoint %s", name, version, digest[:12])
            set_scores(client, name, version, evaluation)
        else:
            run_id, experiment_id = _training_run(client, tracking_uri, trained, checkpoint, digest)
            run_tags = client.get_run(run_id).data.tags
            version_tags = {
                T.CHECKPOINT_SHA256: digest,
                T.DATA_VERSION: data_version or "unknown",
                T.GIT_COMMIT: git_commit or run_tags.get("mlflow.source.git.commit", "unknown"),
                T.TRAIN_MANIFEST_SHA256: run_tags.get("neurosam3d.manifest_sha256", "unknown"),
                **T.scores_to_tags(evaluation),
            }
            signature = ModelSignature(
                inputs=Schema([ColSpec("string", "image"), ColSpec("string", "points")]),
                outputs=Schema([ColSpec("string", "mask"), ColSpec("long", "voxels")]),
                params=ParamSchema([ParamSpec("max_windows", "long", DEFAULT_MAX_WINDOWS)]),
            )
            with _global_tracking_uri(mlflow, tracking_uri):
                with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
                    weights, config, release, preprocessing = _export(checkpoint, Path(tmp))
                    version_tags[T.PREPROCESSING] = preprocessing.to_json()
                    info = mlflow.pyfunc.log_model(
                        name="model",
                        python_model=PromptableSegmenter(),
                        artifacts={"weights": str(weights), "config": str(config)},
                        pip_requirements=_requirements(),
                        code_paths=[str(_package_copy(Path(tmp)))],
                        signature=signature,
                    )
                    mlflow.log_artifact(str(release), "release")
                    _log_evaluation(mlflow, evaluation_dir)
                registered = mlflow.register_model(info.model_uri, name, tags=version_tags)
            version, created = str(registered.version), True
            log.info("registered %s v%s from run %s", name, version, run_id)
        client.set_registered_model_alias(name, T.CHALLENGER, version)
    return Registration(
        name=name,
        version=version,
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=f"models:/{name}/{version}",
        checkpoint_sha256=digest,
        created=created,
    )

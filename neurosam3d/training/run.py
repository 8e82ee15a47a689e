"""``train(config, out_dir)``: one tracked training run, from configuration to summary JSON.

Writes, under ``out_dir`` (which must not hold an earlier run unless resuming):
``checkpoints/best-N.ckpt`` (best validation Dice, per ``trainer.monitor``) and
``checkpoints/last.ckpt`` (at every validation, every ``trainer.checkpoint_every_n_steps`` steps
and at the end), ``config.yaml`` (the resolved
configuration), ``run.json`` (the MLflow run: written when it starts, read by ``--resume``) and
``summary.json`` (run id, checkpoints, validation Dice after 1/5/10 clicks before training and
for the best checkpoint). ``run.json`` and ``summary.json`` are receipts of this workspace's
tracking store; the checkpoints and ``config.yaml`` hold nothing run-specific, so the same
training writes the same bytes in any clone (their DVC hashes go into the committed dvc.lock). The MLflow run gets the configuration as
parameters and as ``config.yaml``, metrics per step and per validation, tags (manifest SHA-256,
DVC hash when the manifests are DVC outputs, git commit), both checkpoints under ``checkpoints/``
(or, with ``tracking.log_checkpoints: false``, their names, sizes and SHA-256 in
``checkpoints.json``) and validation overlays under ``overlays/``.

Resuming (``resume=PATH`` to a checkpoint of this module) restores weights, optimiser,
scheduler and step, and continues the MLflow run of the checkpoint's run folder
(``PATH/../../run.json``) when it names this tracking store; otherwise a new MLflow run starts,
tagged ``neurosam3d.resumed_from``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from neurosam3d.io.atomic import atomic_write_text
from neurosam3d.io.digest import file_sha256
from neurosam3d.tracking import (
    dvc_hash,
    get_or_create_experiment,
    git_commit,
    resolve_tracking_uri,
)
from neurosam3d.training.config import ConfigError, TrainConfig
from neurosam3d.training.samples import manifest_hash

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSummary:
    """What a run produced (also written as ``summary.json``)."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    global_step: int
    best_checkpoint: str
    last_checkpoint: str
    monitor: str
    val_dice: dict[str, float] = field(default_factory=dict)
    baseline_val_dice: dict[str, float] = field(default_factory=dict)
    #: True when ``trainer.max_time_s`` ended training before ``trainer.max_steps``.
    stopped_by_time_limit: bool = False


def _dice_by_click(metrics: dict[str, float]) -> dict[str, float]:
    prefix = "val/dice_"
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}


#: receipt of the MLflow run, in the output folder (no DVC output: it is run-specific)
RUN_RECEIPT = "run.json"


def resumed_run_id(resume: str | Path, tracking_uri: str) -> str | None:
    """The MLflow run a resumed training continues: ``run.json`` of the checkpoint's run folder
    (``OUT/checkpoints/last.ckpt`` -> ``OUT/run.json``) when it names ``tracking_uri``; the id a
    checkpoint written before ``run.json`` existed holds; else None (a new run)."""
    import torch

    from neurosam3d.training.module import MLFLOW_RUN_ID_KEY

    receipt = Path(resume).resolve().parent.parent / RUN_RECEIPT
    if receipt.is_file():
        try:
            run = json.loads(receipt.read_text())
            run_id, uri = str(run["run_id"]), str(run["tracking_uri"])
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{receipt}: not a training run receipt ({err})") from err
        if uri == tracking_uri:
            return run_id
        logger.warning(
            "%s: the run was tracked in %s, not %s; a new MLflow run starts",
            receipt,
            uri,
            tracking_uri,
        )
        return None
    checkpoint = torch.load(resume, map_location="cpu", weights_only=True)
    return checkpoint.get(MLFLOW_RUN_ID_KEY)


def _tags(cfg: TrainConfig) -> dict[str, str]:
    manifests = sorted({*cfg.data.train_manifests, *cfg.data.val_manifests})
    tags = {"neurosam3d.manifest_sha256": manifest_hash(manifests), "model": cfg.model.name}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    dvc = dvc_hash(manifests)
    if dvc:
        tags["neurosam3d.manifest_dvc_md5"] = dvc
    if cfg.model.checkpoint:
        tags["neurosam3d.init_checkpoint"] = str(cfg.model.checkpoint)
    if cfg.model.pretrained_encoder:
        tags["neurosam3d.pretrained_encoder"] = str(cfg.model.pretrained_encoder)
    return tags


def _strategy(cfg: TrainConfig) -> Any:
    """DDP without ``find_unused_parameters``: the set of parameters a step uses is fixed (the
    decoder's unused multimask heads never get gradients), which ``static_graph`` allows."""
    if cfg.trainer.strategy != "ddp":
        return cfg.trainer.strategy
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(find_unused_parameters=False, static_graph=True)


#: what a finished or started run leaves in its output folder
RUN_OUTPUTS = ("summary.json", RUN_RECEIPT, "config.yaml", "checkpoints")


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, from the launcher's environment (torchrun, SLURM,
    Lightning's DDP launcher), before any process group exists."""
    return all(
        int(os.environ.get(name, "0") or 0) == 0
        for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")
    )


def check_inputs(cfg: TrainConfig, out: Path, resume: str | None) -> None:
    """Refuse a run that cannot succeed, before anything is written or logged.

    Missing manifests name the file and ``neurosam3d prepare``; an output folder holding an
    earlier run is refused unless ``resume`` continues a run (on rank zero only: the other
    ranks start after it wrote ``config.yaml``).
    """
    for key, paths in (("train", cfg.data.train_manifests), ("val", cfg.data.val_manifests)):
        for path in paths:
            if not Path(path).is_file():
                raise ConfigError(
                    f"{path}: manifest not found (data.{key}_manifests); prepare the data "
                    f"first, e.g. `neurosam3d prepare --all-samples --out {cfg.data.root}`, or "
                    "point the configuration at prepared manifests"
                )
    if resume is None and is_rank_zero():
        used = [name for name in RUN_OUTPUTS if (out / name).exists()]
        if used:
            raise ConfigError(
                f"{out}: already holds a training run ({', '.join(used)}); give a new --out, "
                f"or continue that run with --resume {out / 'checkpoints' / 'last.ckpt'}"
            )


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: str | None = None) -> TrainSummary:
    """Train as configured; return (and write to ``out_dir/summary.json``) the summary.

    Raises :class:`ConfigError` for a missing manifest or an ``out_dir`` that already holds a
    run (unless resuming), ``neurosam3d.store.StoreError`` for a missing or stale training store,
    all before anything is written. ``trainer.cpu_threads`` applies for the duration of the call
    (the previous torch thread count is restored afterwards).
    """
    import torch

    out = Path(out_dir).resolve()
    check_inputs(cfg, out, resume)
    threads = torch.get_num_threads()
    if cfg.trainer.cpu_threads:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    try:
        return _train(cfg, out, resume)
    finally:
        torch.set_num_threads(threads)


def _record_checkpoints(client: Any, run_id: str, paths: tuple[Path, ...], copy: bool) -> None:
    """Log ``paths`` under the run's ``checkpoints/`` (``copy``), or only list them: name, path,
    size and SHA-256 in ``checkpoints.json`` (the files stay where they are, e.g. DVC's cache)."""
    if copy:
        for path in paths:
            client.log_artifact(run_id, str(path), "checkpoints")
        return
    listing = []
    for path in paths:
        digest = file_sha256(path)
        listing.append(
            {"name": path.name, "path": str(path), "bytes": path.stat().st_size, "sha256": digest}
        )
    client.log_text(run_id, json.dumps(listing, indent=1) + "\n", "checkpoints.json")


def _best_step(path: Path) -> int:
    """The step of ``best-<step>[-vN].ckpt`` (Lightning adds ``-vN`` to a name already taken)."""
    found = re.fullmatch(r"best-(\d+)(?:-v\d+)?", path.stem)
    if found is None:
        raise ValueError(f"{path}: not a best-<step>.ckpt checkpoint name")
    return int(found.group(1))


def _train(cfg: TrainConfig, out: Path, resume: str | None) -> TrainSummary:
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.loggers.logger import DummyLogger

    from neurosam3d.taxonomy import TRAINED_PAIRS_KEY
    from neurosam3d.training.checkpoints import BestCheckpoint, LastCheckpoint, save_atomically
    from neurosam3d.training.datamodule import ManifestDataModule
    from neurosam3d.training.module import InteractiveSegmentationModule
    from neurosam3d.training.preprocessing import training_preprocessing
    from neurosam3d.training.progress import StepProgress
    from neurosam3d.training.trained_pairs import trained_pairs

    record = training_preprocessing(cfg)
    data = ManifestDataModule(
        cfg.data, cfg.model.architecture().img_size, cfg.seed, intensity=record.intensity
    )
    data.setup("fit")  # rows and store entries checked before anything is written or logged
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    uri = resolve_tracking_uri(cfg.tracking.uri)
    # rank zero creates the experiment; the logger of the other ranks never touches MLflow
    experiment_id = get_or_create_experiment(cfg.tracking.experiment, uri) if is_rank_zero() else ""
    # Only rank zero builds the MLflow logger: an MlflowClient opens its store when created
    # (on a fresh SQLite file, ranks started together by torchrun would race to create tables).
    mlf = (
        MLFlowLogger(
            experiment_name=cfg.tracking.experiment,
            tracking_uri=uri,
            run_name=cfg.tracking.run_name,
            run_id=resumed_run_id(resume, uri) if resume else None,
            tags=_tags(cfg),
            log_model=False,
        )
        if is_rank_zero()
        else DummyLogger()  # logs nothing (LearningRateMonitor needs a logger on every rank)
    )
    config_yaml = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if is_rank_zero():
        atomic_write_text(out / "config.yaml", config_yaml)

    module = InteractiveSegmentationModule(cfg.to_dict())
    module.trained_pairs = trained_pairs(cfg.data)
    trainer_cfg = cfg.trainer
    last_path = out / "checkpoints" / "last.ckpt"
    checkpoints = BestCheckpoint(
        dirpath=out / "checkpoints",
        filename="best-{step}",
        monitor=trainer_cfg.monitor,
        mode="max",
        save_top_k=1,
        save_last=False,  # LastCheckpoint: at every validation, not only with a new best
        auto_insert_metric_name=False,
    )
    if resume:
        checkpoints.resumed_from = Path(resume).resolve().parent
    trainer = L.Trainer(
        max_steps=trainer_cfg.max_steps,
        max_time=timedelta(seconds=trainer_cfg.max_time_s) if trainer_cfg.max_time_s else None,
        val_check_interval=trainer_cfg.val_every_n_steps * trainer_cfg.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        precision=trainer_cfg.precision,
        accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
        gradient_clip_val=trainer_cfg.gradient_clip_val,
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=_strategy(cfg),
        logger=mlf,
        callbacks=[
            checkpoints,
            LastCheckpoint(last_path, trainer_cfg.checkpoint_every_n_steps),
            LearningRateMonitor(logging_interval="step"),
            StepProgress(trainer_cfg.log_every_n_steps),
        ],
        # The bar redraws a terminal line; in pipelines (pipes, log files) StepProgress logs.
        enable_progress_bar=sys.stderr.isatty(),
        use_distributed_sampler=False,
        log_every_n_steps=trainer_cfg.log_every_n_steps,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        default_root_dir=out,
    )
    run_id = (mlf.run_id or "") if isinstance(mlf, MLFlowLogger) else ""
    client = mlf.experiment
    if trainer.is_global_zero:
        assert isinstance(mlf, MLFlowLogger), "global rank zero without the MLflow logger"
        receipt = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri}
        atomic_write_text(out / RUN_RECEIPT, json.dumps(receipt, indent=2) + "\n")
        if resume is None:
            mlf.log_hyperparams({"config": cfg.to_dict()})
            client.log_text(run_id, config_yaml, "config.yaml")
        else:  # params of a run are immutable: keep the resumed configuration beside them
            name = f"config-resumed-{Path(resume).stem}.yaml"
            client.log_text(run_id, config_yaml, name)
            client.set_tag(run_id, "neurosam3d.resumed_from", str(Path(resume).resolve()))
        module.overlay_sink = (client, run_id)
        pairs_json = json.dumps(module.trained_pairs, indent=1) + "\n"
        client.log_text(run_id, pairs_json, f"{TRAINED_PAIRS_KEY}.json")

    baseline: dict[str, float] = {}
    if trainer_cfg.validate_before_training and resume is None:
        baseline = _dice_by_click(trainer.validate(module, datamodule=data, verbose=False)[0])
    module.val_history.clear()  # the pre-training numbers are the baseline, not a candidate
    with warnings.catch_warnings():
        # Our sampler skips the draws a resumed epoch already consumed (ManifestDataModule), which
        # Lightning cannot see: its "dataloader is not resumable" warning does not apply.
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    stopped_by_time_limit = bool(trainer_cfg.max_time_s) and trainer.global_step < (
        trainer_cfg.max_steps if trainer_cfg.max_steps > 0 else float("inf")
    )
    if stopped_by_time_limit:
        logger.warning(
            "trainer.max_time_s=%s stopped training at step %d of trainer.max_steps=%d: the "
            "result now depends on this machine's speed; raise or unset the time limit",
            trainer_cfg.max_time_s,
            trainer.global_step,
            trainer_cfg.max_steps,
        )

    extra = not module.val_history or module.val_history[-1][0] != trainer.global_step
    if extra:  # the final weights were not validated inside fit
        trainer.validate(module, datamodule=data, verbose=False)
    save_atomically(trainer, last_path)
    monitor = trainer_cfg.monitor
    final = module.val_history[-1][1]
    seen = checkpoints.best_model_score
    if not checkpoints.best_model_path or seen is None or (extra and final[monitor] > float(seen)):
        best_path, best_metrics = out / "checkpoints" / f"best-{trainer.global_step}.ckpt", final
        save_atomically(trainer, best_path)
        superseded = Path(checkpoints.best_model_path) if checkpoints.best_model_path else None
        if trainer.is_global_zero and superseded and superseded.parent == best_path.parent:
            superseded.unlink(missing_ok=True)  # keep one best checkpoint in the output
    else:  # the callback's file is named best-<step>.ckpt: report that validation
        best_path = Path(checkpoints.best_model_path)
        best_metrics = dict(module.val_history)[_best_step(best_path)]
    summary = TrainSummary(
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        global_step=trainer.global_step,
        best_checkpoint=str(best_path),
        last_checkpoint=str(last_path),
        monitor=monitor,
        val_dice=_dice_by_click(best_metrics),
        baseline_val_dice=baseline,
        stopped_by_time_limit=stopped_by_time_limit,
    )
    if trainer.is_global_zero:
        _record_checkpoints(client, run_id, (best_path, last_path), cfg.tracking.log_checkpoints)
        atomic_write_text(out / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
        client.log_artifact(run_id, str(out / "summary.json"))
        logger.info("MLflow run %s; best checkpoint %s", run_id, best_path)
    return summary

"""``last.ckpt``: written at every validation during fit and every N optimiser steps, atomically.

Lightning's ``ModelCheckpoint(save_last=True)`` beside a monitored top-k checkpoint left
``last.ckpt`` as old as the last *best* one, so a run killed after a validation that did not
improve lost every step since. :class:`LastCheckpoint` saves the full training state (weights,
optimiser, scheduler, loop progress: what ``--resume`` needs) after each validation of ``fit``
and, with ``every_n_steps``, after each N-th optimiser step; every rank takes part (DDP), rank
zero writes a temporary file and renames it, so a kill mid-write leaves the previous one.

Checkpoint bytes are a function of the training alone (DVC caches them and ``dvc.lock``, which
git keeps, records their hash): no MLflow run id (``OUT/run.json`` holds it), no absolute path
(:class:`BestCheckpoint` names its files relative to its folder) and no wall-clock time
(:func:`drop_clock_state`: the ``trainer.max_time_s`` safety net restarts on resume).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from neurosam3d.io.atomic import TMP_MARKER


def save_atomically(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint(path)`` through a temporary sibling and a rename (all ranks call)."""
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{trainer.global_step}")
    trainer.save_checkpoint(tmp)
    trainer.strategy.barrier("last-checkpoint")
    if trainer.is_global_zero:
        os.replace(tmp, path)


class LastCheckpoint(L.Callback):
    """Keeps ``path`` (``OUT/checkpoints/last.ckpt``) at most one validation or N steps old."""

    def __init__(self, path: Path, every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._saved_step:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_atomically(trainer, self.path)
        self._saved_step = trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        n = self.every_n_steps
        if n and trainer.global_step > 0 and trainer.global_step % n == 0:
            self._save(trainer)


def drop_clock_state(checkpoint: dict[str, Any]) -> None:
    """Remove Lightning's ``Timer`` state (seconds elapsed) from a checkpoint being saved."""
    callbacks = checkpoint.get("callbacks", {})
    for key in [k for k in callbacks if str(k).startswith("Timer")]:
        del callbacks[key]


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose saved state names its files relative to its folder.

    Lightning saves ``dirpath`` and every checkpoint path absolute, so the same training in two
    clones wrote different bytes. Here the state holds ``dirpath="."`` and file names; loading
    resolves them against ``resumed_from`` (the folder of the checkpoint being resumed, set by
    ``train``) or this callback's own folder. As in Lightning, a run resumed into another
    folder keeps only the best score and path (it never deletes the other folder's files).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: folder of the checkpoint a resumed run loads (None: this callback's own ``dirpath``)
        self.resumed_from: Path | None = None

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        root = Path(self.dirpath or ".").resolve()

        def relative(path: Any) -> Any:
            return os.path.relpath(path, root) if path else path

        state["dirpath"] = "."
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            state[key] = relative(state[key])
        state["best_k_models"] = {relative(k): v for k, v in state["best_k_models"].items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath") != ".":  # written by Lightning's own ModelCheckpoint
            super().load_state_dict(state_dict)
            return
        root = Path(self.resumed_from or self.dirpath or ".").resolve()

        def absolute(path: Any) -> Any:
            return str(root / path) if path else path

        state = dict(state_dict, dirpath=str(root))
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            state[key] = absolute(state.get(key))
        state["best_k_models"] = {absolute(k): v for k, v in state["best_k_models"].items()}
        if self.dirpath and Path(self.dirpath).resolve() == root:
            state["dirpath"] = self.dirpath  # the same folder: Lightning restores everything
        super().load_state_dict(state)

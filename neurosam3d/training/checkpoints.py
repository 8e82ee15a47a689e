"""``last.ckpt``: written at every validation during fit and every N optimiser steps, atomically.

Lightning's ``ModelCheckpoint(save_last=True)`` beside a monitored top-k checkpoint left
``last.ckpt`` as old as the last *best* one, so a run killed after a validation that did not
improve lost every step since. :class:`LastCheckpoint` saves the full training state (weights,
optimiser, scheduler, loop progress: what ``--resume`` needs) after each validation of ``fit``
and, with ``every_n_steps``, after each N-th optimiser step; every rank takes part (DDP), rank
zero writes a temporary file and renames it, so a kill mid-write leaves the previous one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
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

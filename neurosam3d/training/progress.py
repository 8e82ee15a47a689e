"""Training progress as log lines: what a pipeline run (Dagster, DVC, a batch job) can show.

Lightning's progress bar redraws one terminal line; written to a pipe or a log file it is
either silent or thousands of carriage returns. :class:`StepProgress` instead logs one line every
``every_n_steps`` optimiser steps (and at the end)::

    step 120/400 (30%): loss 0.512, 1.9 steps/s, 1m03s elapsed, about 2m27s left
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``'1m15s'``; ``4000`` -> ``'1h06m40s'``."""
    total = round(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(
    step: int, max_steps: int, steps_run: int, elapsed_s: float, loss: float | None
) -> str:
    """One progress line: ``step`` of ``max_steps`` (<= 0: no limit), loss, and the rate and time
    left from the ``steps_run`` optimiser steps this process ran in ``elapsed_s`` seconds."""
    rate = steps_run / elapsed_s if elapsed_s > 0 else 0.0
    head = (
        f"step {step}/{max_steps} ({100 * step / max_steps:.0f}%)"
        if max_steps > 0
        else f"step {step}"
    )
    detail = [] if loss is None else [f"loss {loss:.3f}"]
    detail += [f"{rate:.2f} steps/s", f"{format_duration(elapsed_s)} elapsed"]
    if max_steps > 0 and rate > 0 and step < max_steps:
        detail.append(f"about {format_duration((max_steps - step) / rate)} left")
    return f"{head}: {', '.join(detail)}"


class StepProgress(L.Callback):
    """Log training progress every ``every_n_steps`` optimiser steps, on rank 0 only."""

    def __init__(self, every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._started: float | None = None
        self._first_step = 0
        self._last_logged = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()
        self._first_step = trainer.global_step  # a resumed run's rate counts its own steps only
        if trainer.is_global_zero:
            logger.info("training: step %d of %d", trainer.global_step, trainer.max_steps)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step != self._last_logged:
            self._log(trainer, step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_logged:
            self._log(trainer, trainer.global_step)

    def _log(self, trainer: L.Trainer, step: int) -> None:
        self._last_logged = step
        if not trainer.is_global_zero or self._started is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        elapsed = time.monotonic() - self._started
        line = progress_line(
            step,
            trainer.max_steps,
            step - self._first_step,
            elapsed,
            None if loss is None else float(loss),
        )
        logger.info("%s", line)

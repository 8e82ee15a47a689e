"""Learning-rate schedules as multipliers of the base rate, per optimiser step.

Registered in :data:`SCHEDULES`; each maps the optimiser step (0-based, counted after gradient
accumulation) to a factor. A linear warm-up over ``warmup_steps`` multiplies any of them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from neurosam3d.training.config import ScheduleConfig

Factor = Callable[[int], float]


def _constant(cfg: ScheduleConfig, total_steps: int) -> Factor:
    return lambda step: 1.0


def _step(cfg: ScheduleConfig, total_steps: int) -> Factor:
    return lambda step: cfg.gamma ** (step // max(cfg.step_size, 1))


def _multistep(cfg: ScheduleConfig, total_steps: int) -> Factor:
    milestones = sorted(cfg.milestones)
    return lambda step: cfg.gamma ** bisect.bisect_right(milestones, step)


def _cosine(cfg: ScheduleConfig, total_steps: int) -> Factor:
    span = max(total_steps - cfg.warmup_steps, 1)

    def factor(step: int) -> float:
        progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


SCHEDULES: dict[str, Callable[[ScheduleConfig, int], Factor]] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "cosine": _cosine,
}


def lr_factor(cfg: ScheduleConfig, total_steps: int) -> Factor:
    """Multiplier of the base learning rate at each optimiser step (warm-up included)."""
    try:
        base = SCHEDULES[cfg.name](cfg, total_steps)
    except KeyError:
        raise ValueError(
            f"schedule.name {cfg.name!r} is unknown; choose one of {sorted(SCHEDULES)}"
        ) from None

    def factor(step: int) -> float:
        warm = min((step + 1) / cfg.warmup_steps, 1.0) if cfg.warmup_steps > 0 else 1.0
        return warm * base(step)

    return factor

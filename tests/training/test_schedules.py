"""Learning-rate schedules (per optimiser step) with hand-computed values."""

from __future__ import annotations

import math

import pytest

from neurosam3d.training.config import ScheduleConfig
from neurosam3d.training.schedules import lr_factor


def test_warmup_is_linear_then_hands_over() -> None:
    f = lr_factor(ScheduleConfig(name="constant", warmup_steps=4), 100)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_step_and_multistep_decay() -> None:
    step = lr_factor(ScheduleConfig(name="step", step_size=10, gamma=0.5), 100)
    assert (step(9), step(10), step(25)) == (1.0, 0.5, 0.25)
    multi = lr_factor(ScheduleConfig(name="multistep", milestones=(5, 8), gamma=0.1), 100)
    assert multi(4) == 1.0 and multi(5) == pytest.approx(0.1) and multi(8) == pytest.approx(0.01)


def test_cosine_reaches_the_floor_at_the_last_step() -> None:
    cfg = ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    f = lr_factor(cfg, 110)
    assert f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_unknown_schedule_is_rejected() -> None:
    with pytest.raises(ValueError, match="cosine"):
        lr_factor(ScheduleConfig(name="exotic"), 10)

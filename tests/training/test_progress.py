"""Training progress lines for pipelines and log files."""

import pytest

from neurosam3d.training.progress import StepProgress, format_duration, progress_line


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (75.2, "1m15s"), (4000, "1h06m40s")]
)
def test_durations_read_like_a_clock(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_progress_line_gives_step_rate_and_time_left() -> None:
    line = progress_line(step=120, max_steps=400, steps_run=120, elapsed_s=60.0, loss=0.51234)
    assert line == "step 120/400 (30%): loss 0.512, 2.00 steps/s, 1m00s elapsed, about 2m20s left"


def test_a_resumed_run_counts_its_rate_from_its_own_steps() -> None:
    # resumed at step 100: 50 steps in 25 s is 2 steps/s, so 250 steps are left at that rate
    line = progress_line(step=150, max_steps=400, steps_run=50, elapsed_s=25.0, loss=None)
    assert line == "step 150/400 (38%): 2.00 steps/s, 25s elapsed, about 2m05s left"


def test_without_a_step_limit_no_time_left_is_claimed() -> None:
    assert progress_line(step=10, max_steps=-1, steps_run=10, elapsed_s=5.0, loss=None) == (
        "step 10: 2.00 steps/s, 5s elapsed"
    )


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_n_steps"):
        StepProgress(0)

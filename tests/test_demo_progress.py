"""What `make demo` shows while Dagster materialises: step events and our own log lines."""

import pytest

from neurosam3d.demo import progress_of

PREFIX = "2026-12-01 22:30:50 +0000 - dagster - DEBUG - retrain - 0817b31a-6ee0 - 10471 - "


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            PREFIX + 'trained_model - STEP_START - Started execution of step "trained_model".',
            "trained_model: started",
        ),
        (
            PREFIX + 'evaluation - STEP_SUCCESS - Finished execution of step "evaluation" in 9.1s.',
            "evaluation: done",
        ),
        (
            PREFIX + 'label_tree - STEP_FAILURE - Execution of step "label_tree" failed.',
            "label_tree: FAILED",
        ),
        (
            "2026-12-01 22:31:02,118 INFO neurosam3d.training.progress: step 120/400 (30%): loss 0.512",
            "  step 120/400 (30%): loss 0.512",
        ),
        (
            "2026-12-01 22:31:02,118 WARNING neurosam3d.training.run: trainer.max_time_s=10 stopped training",
            "  WARNING: trainer.max_time_s=10 stopped training",
        ),
        (
            "2026-12-01 22:31:02,118 INFO pipelines.materialize: dataset x: label tree",
            "  dataset x: label tree",
        ),
    ],
)
def test_progress_lines_are_picked_and_shortened(line: str, shown: str) -> None:
    assert progress_of(line + "\n") == shown


@pytest.mark.parametrize(
    "line",
    [
        PREFIX + 'trained_model - STEP_OUTPUT - Yielded output "result" of type "Any".',
        "2026-12-01 22:30:49,042 INFO alembic.runtime.migration: Context impl SQLiteImpl.",
        "2026-12-01 22:31:02,118 DEBUG neurosam3d.data.prepare: case s0001",
        "Epoch 0: 100%|██████████| 64/64",
    ],
)
def test_other_lines_stay_in_the_log_only(line: str) -> None:
    assert progress_of(line) is None

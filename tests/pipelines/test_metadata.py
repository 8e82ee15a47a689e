"""Dagster metadata people can read: rounded floats, links into the MLflow UI."""

import math

import dagster as dg

from pipelines.metadata import readable
from pipelines.resources import MlflowResource


def test_floats_are_rounded_whether_plain_or_reported_through_pipes() -> None:
    shown = readable(
        {
            "mean_dice.5": 0.11372905277692745,
            "loss": dg.MetadataValue.float(0.123456789),
            "nsd": float("nan"),
            "targets": 7,
            "protocol.rule": "random_error",
        }
    )
    assert shown["mean_dice.5"] == 0.1137
    assert shown["loss"] == 0.1235
    assert math.isnan(shown["nsd"])
    assert shown["targets"] == 7 and shown["protocol.rule"] == "random_error"


def test_artifact_links_point_into_the_run_page() -> None:
    mlflow = MlflowResource(ui_url="http://127.0.0.1:5000")
    assert (
        mlflow.artifact_url("3", "abc", "evaluation/dice_vs_clicks.png")
        == "http://127.0.0.1:5000/#/experiments/3/runs/abc/artifacts/evaluation/dice_vs_clicks.png"
    )

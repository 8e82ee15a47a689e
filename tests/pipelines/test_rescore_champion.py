"""The promotion asset re-evaluates the champion unless manifest *and* protocol match."""

import json
from pathlib import Path

import dagster as dg
import pytest

from neurosam3d.registry import tags as T
from neurosam3d.registry.register import protocol_sha256, scores_from_summary
from pipelines.assets import registry
from pipelines.resources import MlflowResource, ProjectResource

MANIFEST = "m" * 64
RANDOM_NATIVE = {"click_rule": "random_error", "seed": 0, "spacing_mm": None, "clicks": 10}
CENTER_15MM = {"click_rule": "center_error", "seed": 0, "spacing_mm": 1.5, "clicks": 10}


def summary(protocol: dict | None, mean: float) -> dict:
    found = {
        "manifest_sha256": MANIFEST,
        "gate_clicks": 5,
        "mean_dice": {"5": mean},
        "category_dice": {"bone": mean},
    }
    return found if protocol is None else found | {"protocol": protocol}


@pytest.fixture()
def setup(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Resources on a throw-away registry and an ``evaluate`` that writes a random_error summary."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = MlflowResource(tracking_uri=uri, lock_dir=str(tmp_path / "locks"))
    resources = ProjectResource(root=str(project)), mlflow
    evaluated: list[str] = []

    def fake_run_command(context, command, project_resource, mlflow_resource) -> None:
        evaluated.append(command)
        out = project / project_resource.params()["promote"]["champion-eval"]
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary(RANDOM_NATIVE, 0.4)))

    monkeypatch.setattr(registry, "run_command", fake_run_command)
    return resources, evaluated


def add(client, name: str, protocol: dict | None, mean: float, alias: str, tmp: Path) -> str:
    source = tmp / f"model-{alias}"
    source.mkdir(exist_ok=True)
    tags = T.scores_to_tags(scores_from_summary(summary(protocol, mean)))
    version = str(client.create_model_version(name, source.as_uri(), tags=tags).version)
    client.set_registered_model_alias(name, alias, version)
    return version


@pytest.mark.parametrize(
    ("champion_protocol", "rescored"),
    [(RANDOM_NATIVE, False), (CENTER_15MM, True), (None, True)],
    ids=["same-protocol", "other-protocol", "no-fingerprint"],
)
def test_rescore_when_protocol_differs_or_is_unknown(
    setup, tmp_path: Path, champion_protocol: dict | None, rescored: bool
) -> None:
    (project, mlflow), evaluated = setup
    name = project.params()["register"]["name"]
    client = mlflow.client()
    client.create_registered_model(name)
    champion = add(client, name, champion_protocol, 0.8, T.CHAMPION, tmp_path)
    add(client, name, RANDOM_NATIVE, 0.5, T.CHALLENGER, tmp_path)

    result = registry.rescore_champion(dg.build_asset_context(), project, mlflow)

    assert result == (champion if rescored else None)
    assert len(evaluated) == int(rescored)
    tags = client.get_model_version(name, champion).tags
    assert float(tags[T.EVAL_MEAN]) == (0.4 if rescored else 0.8)
    if rescored:  # now scored under the challenger's protocol: the gate may compare
        assert T.evaluation_identity(tags) == (MANIFEST, protocol_sha256(RANDOM_NATIVE))

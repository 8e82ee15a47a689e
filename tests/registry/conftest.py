"""A real MLflow registry on SQLite in a temporary folder, and versions with evaluation tags."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from neurosam3d.registry import tags as T
from neurosam3d.registry.gate import EvalScores

MANIFEST = "a" * 64
#: The protocol fingerprint of every version made by :func:`add_version` unless told otherwise.
PROTOCOL = "p" * 64


@pytest.fixture()
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture()
def client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def add_version(
    client,
    name: str,
    mean: float,
    categories: dict[str, float],
    tmp: Path,
    protocol: str | None = PROTOCOL,
) -> str:
    """Create a model version whose tags carry these Dice scores at 5 clicks (evaluated under
    ``protocol``; None: registered without a protocol fingerprint); return its number."""
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        client.create_registered_model(name)
    source = tmp / f"model-{mean}"
    source.mkdir(exist_ok=True)
    scores = EvalScores(MANIFEST, 5, mean, categories, protocol)
    version = client.create_model_version(name, source.as_uri(), tags=T.scores_to_tags(scores))
    client.set_registered_model_alias(name, T.CHALLENGER, version.version)
    return str(version.version)

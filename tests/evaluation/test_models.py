"""``models:/NAME@ALIAS`` resolves to the registered version's checkpoint file."""

from __future__ import annotations

import pytest

from neurosam3d.evaluation.models import download_registered_checkpoint


def _register(tracking_uri: str, source, name: str = "seg") -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(name)
    version = client.create_model_version(name, source.as_uri())
    client.set_registered_model_alias(name, "champion", version.version)


def test_alias_resolves_to_the_single_checkpoint(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    source = tmp_path / "model"
    (source / "artifacts").mkdir(parents=True)
    (source / "artifacts" / "weights.safetensors").write_bytes(b"weights")
    (source / "MLmodel").write_text("flavors: {}\n")
    _register(uri, source)
    path = download_registered_checkpoint("models:/seg@champion", tmp_path / "dl", tracking_uri=uri)
    assert path.name == "weights.safetensors" and path.read_bytes() == b"weights"
    assert tmp_path / "dl" in path.parents


def test_ambiguous_or_missing_checkpoints_are_refused(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    source = tmp_path / "model"
    source.mkdir()
    (source / "a.pt").write_bytes(b"a")
    (source / "b.ckpt").write_bytes(b"b")
    _register(uri, source)
    with pytest.raises(ValueError, match=r"exactly one checkpoint.*a\.pt.*b\.ckpt"):
        download_registered_checkpoint("models:/seg@champion", tmp_path / "dl", tracking_uri=uri)
    with pytest.raises(ValueError, match="not an MLflow model URI"):
        download_registered_checkpoint("runs:/abc/model", tmp_path / "dl", tracking_uri=uri)

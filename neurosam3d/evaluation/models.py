"""Resolve the model to evaluate: an ``nn.Module``, a checkpoint file or ``models:/NAME@ALIAS``.

:func:`download_registered_checkpoint` is the one place that turns an MLflow model URI
(``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) into a local checkpoint file; the registry
and the demo reuse it. MLflow is imported inside the function (it costs about 2 s).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from neurosam3d.transforms import Preprocessing

logger = logging.getLogger(__name__)

MODEL_URI_PREFIX = "models:/"
#: File endings recognised as checkpoints inside a registered model's artifacts.
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")


def download_registered_checkpoint(
    model_uri: str, dst_dir: str | os.PathLike[str], tracking_uri: str | None = None
) -> Path:
    """Download the registered model ``model_uri`` into ``dst_dir``; return its checkpoint file.

    The model version's artifacts must hold exactly one file ending in one of
    :data:`CHECKPOINT_SUFFIXES`. ``tracking_uri`` defaults to :func:`neurosam3d.tracking.resolve_tracking_uri`.
    """
    if not model_uri.startswith(MODEL_URI_PREFIX):
        raise ValueError(
            f"{model_uri!r} is not an MLflow model URI (models:/NAME@ALIAS or models:/NAME/VERSION)"
        )
    import mlflow
    from mlflow import MlflowClient

    from neurosam3d.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, sep, alias = model_uri.removeprefix(MODEL_URI_PREFIX).partition("@")
    if sep:
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = name.partition("/")
        version = client.get_model_version(name, number)
    source = client.get_model_version_download_uri(version.name, version.version)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst_dir), tracking_uri=uri
        )
    )
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    found = [p for p in files if p.name.endswith(CHECKPOINT_SUFFIXES)]
    if len(found) != 1:
        raise ValueError(
            f"{model_uri}: expected exactly one checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) in the "
            f"registered model's artifacts, found {[str(p.relative_to(local)) for p in found] or 'none'}"
        )
    logger.info("downloaded %s -> %s", model_uri, found[0])
    return found[0]


def checkpoint_path(
    source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The local checkpoint file of a path or a ``models:/NAME@ALIAS`` URI (downloaded once)."""
    text = str(source)
    if text.startswith(MODEL_URI_PREFIX):
        import tempfile

        cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="neurosam3d-model-"))
        return download_registered_checkpoint(text, cache)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def trained_pairs_from_checkpoint(path: str | os.PathLike[str]) -> set[tuple[str, str]] | None:
    """The (dataset, class_name) pairs recorded by ``neurosam3d train`` in a checkpoint, or None.

    ``None`` when the checkpoint does not record them (release checkpoints, bare state dicts).
    """
    from neurosam3d.model.formats import read_state_dict
    from neurosam3d.taxonomy import TRAINED_PAIRS_KEY

    if Path(path).suffix == ".safetensors":
        return None
    recorded = read_state_dict(path).metadata.get(TRAINED_PAIRS_KEY)
    if recorded is None:
        return None
    return {(str(d), str(c)) for d, c in recorded}


def model_preprocessing(
    model: torch.nn.Module, checkpoint: str | os.PathLike[str] | None
) -> tuple[Preprocessing, str]:
    """The :class:`~neurosam3d.transforms.Preprocessing` of a model: ``(record, where from)``.

    From ``checkpoint`` when given (:func:`neurosam3d.model.read_preprocessing`: its record, or
    the default of its kind); else the module's ``preprocessing`` attribute (a training module
    has one); else :meth:`Preprocessing.native` at the model's input size.
    """
    if checkpoint is not None:
        from neurosam3d.model import read_preprocessing

        return read_preprocessing(checkpoint)
    attached = getattr(model, "preprocessing", None)
    if isinstance(attached, Preprocessing):
        return attached, "module"
    return Preprocessing.native(getattr(model, "img_size", None)), "native default"


def resolve_device(device: str) -> str:
    """``"auto"``: ``"cuda"`` when a GPU is present, else ``"cpu"``; anything else as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_amp(amp: str, device: str) -> torch.dtype | None:
    """Autocast dtype: ``"bf16"`` -> bfloat16, ``"none"`` -> None, ``"auto"`` -> bf16 on a GPU only."""
    if amp == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else None
    choices = {"bf16": torch.bfloat16, "none": None}
    if amp not in choices:
        raise ValueError(f"unknown amp {amp!r}; choose auto, bf16 or none")
    return choices[amp]


def resolve_model(
    model: torch.nn.Module | str | os.PathLike[str],
    *,
    name: str | None = None,
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> torch.nn.Module:
    """A model in eval mode on ``device`` from a module, a checkpoint path or a model URI.

    ``name`` is the architecture (``build_model`` name) when it cannot be detected from the
    checkpoint's keys; ``cache_dir`` receives downloaded registered models (default: a folder
    under the system temp directory).
    """
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    from neurosam3d.model import load_checkpoint

    path = checkpoint_path(model, cache_dir)
    return load_checkpoint(path, name=name).to(device).eval()

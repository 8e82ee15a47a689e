"""Checkpoint files: read every accepted format, write ours in the formats other tools read.

Accepted inputs (:func:`read_state_dict`):

* release format: a ``torch.save``-d dict with ``"model_state_dict"`` and an
  ``argparse.Namespace`` under ``"args"`` (plus epoch, losses, ... which are kept as metadata);
* a bare state dict, or one whose keys all start with ``module.`` (DDP) (SAM's release);
* a dict whose ``"model"`` entry is the state dict (SAM-Med2D's release, e.g. ``sam-med2d_b.pth``);
* our Lightning checkpoints: ``{"state_dict": {"model.<key>": ...}, ...}`` (the LightningModule
  holds the :class:`Sam3D` as attribute ``model``; other entries of ``state_dict`` are ignored);
* ``.safetensors`` files.

Pickled files are read with ``torch.load(weights_only=True)`` and only ``argparse.Namespace``
allow-listed; a file that needs any other pickle global is refused with :class:`CheckpointError`
(nothing in it is executed). Writes are atomic (``neurosam3d.io.atomic``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from neurosam3d.io.atomic import atomic_path
from neurosam3d.model.config import MODEL_CONFIGS
from neurosam3d.model.sam3d import Sam3D
from neurosam3d.transforms.preprocessing import PREPROCESSING_KEY, Preprocessing

logger = logging.getLogger(__name__)

LIGHTNING_PREFIX = "model."
SAFE_GLOBALS = [argparse.Namespace]
ExportFormat = Literal["release", "safetensors", "lightning"]
StateDict = dict[str, torch.Tensor]


class CheckpointError(Exception):
    """A checkpoint could not be read, was refused, or does not fit the model."""


@dataclass
class CheckpointContents:
    """A checkpoint's weights (keys as in :class:`Sam3D`), its format and its other entries."""

    state_dict: StateDict
    format: str
    metadata: dict[str, Any]


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message also suggests turning weights-only loading off, which we never do: keep the cause.
        cause = next(
            (ln.strip() for ln in str(exc).splitlines() if "unsupported" in ln.lower()),
            "unsupported pickle",
        )
        raise CheckpointError(
            f"refusing to load {path}: it needs pickled objects outside the allow-list "
            f"(tensors, plain containers, argparse.Namespace): {cause}. Nothing in it was run; "
            f"if you trust the file, re-save its weights as safetensors elsewhere."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        # Garbage bytes surface from the (weights-only) unpickler as any of these.
        raise CheckpointError(
            f"cannot read {path}: truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({exc})") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_state_dict(path: str | os.PathLike[str]) -> CheckpointContents:
    """Read weights from any accepted format (module docstring); keys as in :class:`Sam3D`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state_dict, metadata = _read_safetensors(path)
        return CheckpointContents(state_dict, "safetensors", metadata)
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        fmt, raw = "release", obj["model_state_dict"]
        metadata = {k: v for k, v in obj.items() if k != "model_state_dict"}
    elif isinstance(obj, Mapping) and "state_dict" in obj and _is_state_dict(obj["state_dict"]):
        fmt = "lightning"
        raw = {
            k.removeprefix(LIGHTNING_PREFIX): v
            for k, v in obj["state_dict"].items()
            if k.startswith(LIGHTNING_PREFIX)
        }
        if not raw:
            raise CheckpointError(
                f"{path} is a Lightning checkpoint without '{LIGHTNING_PREFIX}*' keys: the "
                f"LightningModule must hold the Sam3D as attribute 'model'"
            )
        metadata = {k: v for k, v in obj.items() if k != "state_dict"}
    elif isinstance(obj, Mapping) and "model" in obj and _is_state_dict(obj["model"]):
        fmt, raw = "model", obj["model"]
        metadata = {k: v for k, v in obj.items() if k != "model"}
    elif _is_state_dict(obj):
        fmt, raw, metadata = "state_dict", obj, {}
    else:
        raise CheckpointError(
            f"{path} holds no recognisable weights (expected a release dict with "
            f"'model_state_dict', a Lightning dict with 'state_dict', a dict with 'model', or a "
            f"state dict)"
        )
    if not _is_state_dict(raw):
        raise CheckpointError(f"{path}: the weights entry is not a mapping of names to tensors")
    if all(k.startswith("module.") for k in raw):
        raw = {k.removeprefix("module."): v for k, v in raw.items()}
        fmt += "+ddp"
    return CheckpointContents(dict(raw), fmt, metadata)


def export_checkpoint(
    model: Sam3D,
    path: str | os.PathLike[str],
    fmt: ExportFormat = "release",
    epoch: int = 0,
    preprocessing: Preprocessing | None = None,
) -> Path:
    """Write weights atomically in a format other tools read; return the path.

    * ``"release"``: the SAM-Med3D training script's dict (``model_state_dict``, ``epoch``, empty
      optimiser/scheduler states, losses, dices, ``args`` as an ``argparse.Namespace``), which
      SAM-Med3D's own tools and :func:`load_checkpoint` read;
    * ``"safetensors"``: the state dict, with the configuration as JSON metadata;
    * ``"lightning"``: ``{"state_dict": {"model.<key>": ...}, "epoch", "global_step", ...}``.

    ``preprocessing``: the model's :class:`~neurosam3d.transforms.Preprocessing` record, stored
    under :data:`~neurosam3d.transforms.PREPROCESSING_KEY` (inside ``args`` for the release
    format, so upstream tools still load the file; JSON metadata for safetensors); ``None``
    writes none (readers then take the default of the format). Weights are stored as
    contiguous float32 CPU tensors; nothing time- or machine-dependent is written, so the same
    model gives the same bytes.
    """
    if fmt not in ("release", "safetensors", "lightning"):
        raise ValueError(f"unknown export format {fmt!r}; choose release, safetensors or lightning")
    sd = {
        k: v.detach().to("cpu", torch.float32).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    cfg = model.config
    path = Path(path)
    with atomic_path(path) as tmp:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            metadata = {"neurosam3d_config": json.dumps(cfg.to_dict())}
            if preprocessing is not None:
                metadata[PREPROCESSING_KEY] = preprocessing.to_json()
            save_file(sd, str(tmp), metadata=metadata)
        elif fmt == "release":
            args = argparse.Namespace(
                model_type="vit_b_ori" if cfg == MODEL_CONFIGS["sam_med3d"] else "custom",
                img_size=cfg.img_size,
                neurosam3d_config=cfg.to_dict(),
            )
            if preprocessing is not None:
                setattr(args, PREPROCESSING_KEY, preprocessing.to_dict())
            payload = {
                "epoch": epoch,
                "model_state_dict": sd,
                "optimizer_state_dict": None,
                "lr_scheduler_state_dict": None,
                "losses": [],
                "dices": [],
                "best_loss": float("inf"),
                "best_dice": 0.0,
                "used_datas": [],
                "args": args,
            }
            torch.save(payload, tmp)
        else:
            from importlib.metadata import version

            payload = {
                "state_dict": {LIGHTNING_PREFIX + k: v for k, v in sd.items()},
                "neurosam3d_config": cfg.to_dict(),
                "epoch": epoch,
                "global_step": 0,
                "pytorch-lightning_version": version("lightning"),
            }
            if preprocessing is not None:
                payload[PREPROCESSING_KEY] = preprocessing.to_dict()
            torch.save(payload, tmp)
    logger.info("wrote %s checkpoint %s", fmt, path)
    return path


def export_release(
    model: Sam3D,
    path: str | os.PathLike[str],
    epoch: int = 0,
    preprocessing: Preprocessing | None = None,
) -> Path:
    """Shorthand for ``export_checkpoint(model, path, fmt="release")``."""
    return export_checkpoint(model, path, fmt="release", epoch=epoch, preprocessing=preprocessing)


def save_safetensors(
    model: Sam3D, path: str | os.PathLike[str], preprocessing: Preprocessing | None = None
) -> Path:
    """Shorthand for ``export_checkpoint(model, path, fmt="safetensors")``."""
    return export_checkpoint(model, path, fmt="safetensors", preprocessing=preprocessing)

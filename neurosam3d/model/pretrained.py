"""Encoder-only pretrained weights: ``load_pretrained_encoder(model, path)``.

Two kinds of file are read (``torch.load(weights_only=True)`` only, as everywhere):

* a **3DINO pretraining checkpoint**: a dict whose ``teacher`` entry is a state dict holding the
  backbone under ``backbone.`` (keys possibly also prefixed ``module.``) next to the
  ``dino_head.*`` / ``ibot_head.*`` projection heads; a bare state dict of ``backbone.*`` keys
  is read the same way. The backbone keys load into ``model.image_encoder.backbone`` of a
  3DINO model (``encoder_type="dinov2"``, e.g. ``"dinov2_vitl3d"``); the heads are reported as
  ignored. 3DINO's code and weights are CC BY-NC-ND 4.0: this project ships neither.
* **any checkpoint of ours** (every format of :func:`~neurosam3d.model.read_state_dict`): its
  ``image_encoder.*`` keys load into ``model.image_encoder``; the prompt encoder and mask
  decoder keys are reported as ignored.

Loading is strict on the encoder keys (missing, unexpected or mis-shaped keys raise
:class:`~neurosam3d.model.CheckpointError` with the same key report as ``load_checkpoint``);
a missing file, or one with no encoder weights, is an error too, never a silent fresh start.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from neurosam3d.model.checkpoint import KeyReport, compare_state_dicts
from neurosam3d.model.formats import (
    CheckpointError,
    _is_state_dict,
    _torch_load,
    read_state_dict,
)
from neurosam3d.model.sam3d import Sam3D

logger = logging.getLogger(__name__)

BACKBONE_PREFIX = "backbone."
ENCODER_PREFIX = "image_encoder."


@dataclass
class EncoderLoadReport:
    """What :func:`load_pretrained_encoder` loaded and what it left out."""

    path: str
    format: str  # "3dino-teacher", "3dino-backbone" or the format of read_state_dict
    target: str  # the module the weights went into, e.g. "image_encoder.backbone"
    keys: KeyReport
    ignored: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        groups = Counter(k.split(".", 1)[0] for k in self.ignored)
        summary = ", ".join(f"{g}.* ({n})" for g, n in sorted(groups.items())) or "none"
        lines = [f"{self.path} ({self.format}) -> {self.target}: {self.keys}"]
        lines.append(f"  ignored (not encoder weights): {summary}")
        return "\n".join(lines)


def _strip_module(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _read_3dino(path: Path) -> tuple[str, dict[str, torch.Tensor]] | None:
    """``(format, state dict without module.)`` of a 3DINO file, or None if it is not one."""
    if path.suffix == ".safetensors":
        return None
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "teacher" in obj:
        if not _is_state_dict(obj["teacher"]):
            raise CheckpointError(
                f"{path}: its 'teacher' entry is not a mapping of names to tensors"
            )
        return "3dino-teacher", _strip_module(obj["teacher"])
    if _is_state_dict(obj):
        sd = _strip_module(obj)
        if any(k.startswith(BACKBONE_PREFIX) for k in sd):
            return "3dino-backbone", sd
    return None


def load_pretrained_encoder(model: Sam3D, path: str | os.PathLike[str]) -> EncoderLoadReport:
    """Load encoder weights from ``path`` into ``model`` in place (module docstring).

    Args:
        model: a :class:`Sam3D` (for a 3DINO file, one with a 3DINO encoder).
        path: a 3DINO pretraining checkpoint or any checkpoint of ours.

    Returns:
        The report (also logged): keys matched, heads / other components ignored.

    Raises:
        CheckpointError: missing, unreadable or refused file; no encoder weights in it; a 3DINO
            file for a model without a 3DINO encoder; missing, unexpected or mis-shaped keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained encoder {path} does not exist")
    dino = _read_3dino(path)
    if dino is not None:
        fmt, sd = dino
        if model.config.encoder_type != "dinov2":
            raise CheckpointError(
                f"{path} is a 3DINO checkpoint ({fmt}), but the model's encoder is "
                f"{model.config.encoder_type!r}: use a 3DINO configuration such as 'dinov2_vitl3d'"
            )
        target_name, target = "image_encoder.backbone", model.image_encoder.backbone
        given = {
            k.removeprefix(BACKBONE_PREFIX): v
            for k, v in sd.items()
            if k.startswith(BACKBONE_PREFIX)
        }
        ignored = [k for k in sd if not k.startswith(BACKBONE_PREFIX)]
    else:
        contents = read_state_dict(path)
        fmt = contents.format
        target_name, target = "image_encoder", model.image_encoder
        sd = contents.state_dict
        given = {
            k.removeprefix(ENCODER_PREFIX): v for k, v in sd.items() if k.startswith(ENCODER_PREFIX)
        }
        ignored = [k for k in sd if not k.startswith(ENCODER_PREFIX)]
        if not given:
            raise CheckpointError(
                f"{path} holds no encoder weights: neither a 3DINO checkpoint ('teacher' with "
                f"'backbone.*' keys) nor one with 'image_encoder.*' keys"
            )
    report = compare_state_dicts(given, target.state_dict())
    result = EncoderLoadReport(str(path), fmt, target_name, report, ignored)
    if not report.ok:
        raise CheckpointError(f"{path} does not fit {target_name} of the model:\n{report}")
    target.load_state_dict(given, strict=True)
    logger.info("loaded pretrained encoder: %s", result)
    return result

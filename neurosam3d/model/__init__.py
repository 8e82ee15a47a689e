"""Promptable 3-D segmentation model (SAM-Med3D compatible): build, load, export, predict.

Public API (see README "Model API"):

* :func:`build_model` ``(name="sam_med3d") -> Sam3D``; :data:`MODEL_CONFIGS`, :class:`ModelConfig`;
* :func:`load_checkpoint` ``(path, name=None, strict=True, components=None) -> Sam3D``;
* :func:`load_pretrained_encoder` ``(model, path) -> EncoderLoadReport``: encoder-only weights
  (3DINO pretraining checkpoints, or ``image_encoder.*`` of any checkpoint of ours);
* :func:`export_checkpoint` ``(model, path, fmt="release" | "safetensors" | "lightning")``,
  :func:`export_release`, :func:`save_safetensors`, :func:`inspect_checkpoint`, :func:`read_state_dict`;
* :class:`Predictor` (``set_image`` once, ``predict`` per click set) returning :class:`Prediction`.
"""

from neurosam3d.model.builder import build_model
from neurosam3d.model.checkpoint import (
    CheckpointInfo,
    KeyReport,
    inspect_checkpoint,
    load_checkpoint,
    read_preprocessing,
)
from neurosam3d.model.config import MODEL_CONFIGS, ModelConfig, get_config
from neurosam3d.model.detect import detect_config
from neurosam3d.model.formats import (
    CheckpointError,
    export_checkpoint,
    export_release,
    read_state_dict,
    save_safetensors,
)
from neurosam3d.model.predictor import Prediction, Predictor
from neurosam3d.model.pretrained import EncoderLoadReport, load_pretrained_encoder
from neurosam3d.model.sam3d import Sam3D

__all__ = [
    "MODEL_CONFIGS",
    "CheckpointError",
    "CheckpointInfo",
    "EncoderLoadReport",
    "KeyReport",
    "ModelConfig",
    "Prediction",
    "Predictor",
    "Sam3D",
    "build_model",
    "detect_config",
    "export_checkpoint",
    "export_release",
    "get_config",
    "inspect_checkpoint",
    "load_checkpoint",
    "load_pretrained_encoder",
    "read_preprocessing",
    "read_state_dict",
    "save_safetensors",
]

"""Promptable 3-D segmentation model (SAM-Med3D compatible): build, load, export, predict."""

from neurosam3d.model.builder import build_model
from neurosam3d.model.config import MODEL_CONFIGS, ModelConfig, get_config
from neurosam3d.model.sam3d import Sam3D

__all__ = ["MODEL_CONFIGS", "ModelConfig", "Sam3D", "build_model", "get_config"]

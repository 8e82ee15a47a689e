"""Build :class:`Sam3D` models from named or explicit configurations."""

from __future__ import annotations

from neurosam3d.model.config import ModelConfig, get_config
from neurosam3d.model.dino_encoder import DinoImageEncoder3D
from neurosam3d.model.image_encoder import ImageEncoderViT3D
from neurosam3d.model.mask_decoder import MaskDecoder3D
from neurosam3d.model.prompt_encoder import PromptEncoder3D
from neurosam3d.model.sam2d import SAM2D_CONFIGS, Sam2D, Sam2DConfig, build_sam2d
from neurosam3d.model.sam3d import Sam3D


def build_model(name: str | ModelConfig | Sam2DConfig = "sam_med3d") -> Sam3D | Sam2D:
    """Return a freshly initialised model for a registered name or a configuration.

    ``"sam_med3d"`` is the released SAM-Med3D architecture (state-dict keys and shapes as in the
    released checkpoints), ``"dinov2_vitl3d"`` the seed's 3DINO ViT-L model; see
    :data:`neurosam3d.model.MODEL_CONFIGS` for the others. The 2-D baselines ``"sam_vit_b"`` and
    ``"sam_med2d_vit_b"`` (or a :class:`Sam2DConfig`) build a
    :class:`~neurosam3d.model.sam2d.Sam2D` (:mod:`neurosam3d.model.sam2d`).
    """
    if isinstance(name, Sam2DConfig) or (isinstance(name, str) and name in SAM2D_CONFIGS):
        return build_sam2d(name)
    cfg = get_config(name) if isinstance(name, str) else name
    encoder_cls = DinoImageEncoder3D if cfg.encoder_type == "dinov2" else ImageEncoderViT3D
    return Sam3D(cfg, encoder_cls(cfg), PromptEncoder3D(cfg), MaskDecoder3D(cfg))

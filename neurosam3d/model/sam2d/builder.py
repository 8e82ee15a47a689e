"""Build :class:`Sam2D` models from named or explicit 2-D configurations."""

from __future__ import annotations

from neurosam3d.model.sam2d.config import SAM2D_CONFIGS, Sam2DConfig
from neurosam3d.model.sam2d.image_encoder import ImageEncoderViT
from neurosam3d.model.sam2d.mask_decoder import MaskDecoder
from neurosam3d.model.sam2d.prompt_encoder import PromptEncoder
from neurosam3d.model.sam2d.sam2d import Sam2D


def build_sam2d(name: str | Sam2DConfig = "sam_vit_b") -> Sam2D:
    """Return a freshly initialised 2-D model (``"sam_vit_b"``, ``"sam_med2d_vit_b"`` or a config)."""
    if isinstance(name, str):
        try:
            cfg = SAM2D_CONFIGS[name]
        except KeyError:
            known = ", ".join(sorted(SAM2D_CONFIGS))
            raise KeyError(f"unknown 2-D model configuration {name!r}; known: {known}") from None
    else:
        cfg = name
    return Sam2D(cfg, ImageEncoderViT(cfg), PromptEncoder(cfg), MaskDecoder(cfg))

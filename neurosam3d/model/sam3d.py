"""The composed promptable 3-D segmentation model.

``Sam3D`` holds ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` (state-dict prefixes
as in the released SAM-Med3D checkpoints) and two differentiable helpers for training loops
(:class:`~neurosam3d.model.promptable.PromptableModel`, shared with the 2-D models)::

    emb = model.image_encoder(image)                          # B x 1 x S^3 -> B x E x G^3
    logits, iou = model.predict_masks(emb, points, labels, mask_input=prev_logits)
    full = model.upscale_logits(logits, model.img_size)        # B x M x S^3

``points``: ``B x N x 3`` float voxel indices of the input volume (last three axes, D/H/W order);
``labels``: ``B x N`` int (1 positive, 0 negative, -1 padding); ``mask_input``:
``B x 1 x L^3`` previous low-resolution logits or ``None`` (``L = low_res_size``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurosam3d.model.config import ModelConfig
from neurosam3d.model.dino_encoder import DinoImageEncoder3D
from neurosam3d.model.image_encoder import ImageEncoderViT3D
from neurosam3d.model.mask_decoder import MaskDecoder3D
from neurosam3d.model.prompt_encoder import PromptEncoder3D
from neurosam3d.model.promptable import PromptableModel


class Sam3D(PromptableModel):
    """Image encoder, prompt encoder and mask decoder of one :class:`ModelConfig`."""

    config: ModelConfig

    def __init__(
        self,
        config: ModelConfig,
        image_encoder: ImageEncoderViT3D | DinoImageEncoder3D,
        prompt_encoder: PromptEncoder3D,
        mask_decoder: MaskDecoder3D,
    ) -> None:
        super().__init__(config, image_encoder, prompt_encoder, mask_decoder)

    @staticmethod
    def upscale_logits(low_res: torch.Tensor, size: int | tuple[int, int, int]) -> torch.Tensor:
        """Trilinear resize of ``B x M x L^3`` logits to ``B x M x size^3`` (or a D, H, W tuple)."""
        return F.interpolate(low_res, size=size, mode="trilinear", align_corners=False)

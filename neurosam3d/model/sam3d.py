"""The composed promptable 3-D segmentation model.

``Sam3D`` holds ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` (state-dict prefixes
as in the released SAM-Med3D checkpoints) and two differentiable helpers for training loops::

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
from torch import nn

from neurosam3d.model.config import ModelConfig
from neurosam3d.model.dino_encoder import DinoImageEncoder3D
from neurosam3d.model.image_encoder import ImageEncoderViT3D
from neurosam3d.model.mask_decoder import MaskDecoder3D
from neurosam3d.model.prompt_encoder import PromptEncoder3D


class Sam3D(nn.Module):
    """Image encoder, prompt encoder and mask decoder of one :class:`ModelConfig`."""

    def __init__(
        self,
        config: ModelConfig,
        image_encoder: ImageEncoderViT3D | DinoImageEncoder3D,
        prompt_encoder: PromptEncoder3D,
        mask_decoder: MaskDecoder3D,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    @property
    def img_size(self) -> int:
        """Edge of the input volume in voxels."""
        return self.config.img_size

    @property
    def low_res_size(self) -> int:
        """Edge of the low-resolution logits and of the mask prompt (``img_size / 4``)."""
        return self.config.low_res_size

    def predict_masks(
        self,
        image_embedding: torch.Tensor,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on a computed embedding (differentiable).

        Args:
            image_embedding: ``B x E x G^3`` or ``1 x E x G^3`` (shared by all ``B`` prompts).
            points: ``B x N x 3`` float voxel indices, or ``None`` (then a box or mask is needed).
            labels: ``B x N`` int labels of ``points``.
            mask_input: ``B x 1 x L^3`` previous low-resolution logits, or ``None``.
            multimask: return the ``num_multimask_outputs`` alternative masks instead of one.
            boxes: ``B x 6`` voxel box corners (configurations with ``box_prompts`` only).

        Returns:
            ``low_res_logits`` ``B x M x L^3`` and ``iou`` ``B x M`` (``M`` 1 or 3).
        """
        sparse, dense = self.prompt_encoder(
            points=None if points is None else (points, labels), boxes=boxes, masks=mask_input
        )
        return self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    @staticmethod
    def upscale_logits(low_res: torch.Tensor, size: int | tuple[int, int, int]) -> torch.Tensor:
        """Trilinear resize of ``B x M x L^3`` logits to ``B x M x size^3`` (or a D, H, W tuple)."""
        return F.interpolate(low_res, size=size, mode="trilinear", align_corners=False)

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``image`` (``B x in_chans x S^3``) and decode one prompt per volume."""
        return self.predict_masks(self.image_encoder(image), points, labels, mask_input, multimask)

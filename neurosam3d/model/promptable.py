"""The composition shared by the 3-D and 2-D promptable models: encoders, decoder, two steps.

:class:`PromptableModel` holds ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` (SAM's
state-dict prefixes, kept by the released SAM, SAM-Med2D and SAM-Med3D checkpoints) and the two
differentiable steps both ranks share, for ``n`` spatial axes (3: :class:`~.sam3d.Sam3D`, 2:
:class:`~neurosam3d.model.sam2d.sam2d.Sam2D`)::

    emb = model.image_encoder(image)                          # B x C x S^n -> B x E x G^n
    logits, iou = model.predict_masks(emb, points, labels, mask_input=prev_logits)

``points``: ``B x N x n`` float positions in the model input (3-D voxel indices along D/H/W,
2-D pixel ``(x, y)``); ``labels``: ``B x N`` int (1 positive, 0 negative, -1 padding);
``mask_input``: ``B x 1 x L^n`` previous low-resolution logits or ``None`` (``L = low_res_size``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class PromptableModel(nn.Module):
    """Image encoder, prompt encoder and mask decoder of one configuration (``config``)."""

    def __init__(
        self,
        config: Any,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    @property
    def img_size(self) -> int:
        """Edge of the cubic (square) model input in voxels (pixels)."""
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
            image_embedding: ``B x E x G^n`` or ``1 x E x G^n`` (shared by all ``B`` prompts).
            points: ``B x N x n`` float positions, or ``None`` (then a box or mask is needed).
            labels: ``B x N`` int labels of ``points``.
            mask_input: ``B x 1 x L^n`` previous low-resolution logits, or ``None``.
            multimask: return the ``num_multimask_outputs`` alternative masks instead of one.
            boxes: ``B x 2n`` box corners (3-D: configurations with ``box_prompts`` only).

        Returns:
            ``low_res_logits`` ``B x M x L^n`` and ``iou`` ``B x M`` (``M`` 1 or 3).
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

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``image`` (``B x C x S^n``, as the encoder takes it) and decode one prompt
        per image."""
        return self.predict_masks(self.image_encoder(image), points, labels, mask_input, multimask)

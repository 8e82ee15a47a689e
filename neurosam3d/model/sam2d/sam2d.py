"""The composed 2-D promptable segmentation model (SAM / SAM-Med2D).

``Sam2D`` holds ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` (state-dict keys as in
the released SAM and SAM-Med2D checkpoints; ``pixel_mean`` / ``pixel_std`` are non-persistent
buffers, as in SAM); ``predict_masks`` is shared with the 3-D model
(:class:`~neurosam3d.model.promptable.PromptableModel`)::

    x = model.preprocess(image)                               # B x 3 x h x w (0-255) -> B x 3 x S x S
    emb = model.image_encoder(x)                              # -> B x E x G x G
    logits, iou = model.predict_masks(emb, points, labels, mask_input=prev_logits, multimask=True)
    masks = model.postprocess_masks(logits, (h, w), original_size)

``points``: ``B x N x 2`` float pixel ``(x, y)`` in the model input; ``labels``: ``B x N``
(1 positive, 0 negative, -1 padding); ``mask_input``: ``B x 1 x 4G x 4G`` or ``None``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurosam3d.model.promptable import PromptableModel
from neurosam3d.model.sam2d.config import Sam2DConfig
from neurosam3d.model.sam2d.image_encoder import ImageEncoderViT
from neurosam3d.model.sam2d.mask_decoder import MaskDecoder
from neurosam3d.model.sam2d.prompt_encoder import PromptEncoder


class Sam2D(PromptableModel):
    """Image encoder, prompt encoder and mask decoder of one :class:`Sam2DConfig`; ``forward``
    takes a normalised ``B x 3 x S x S`` image (:meth:`preprocess`)."""

    mask_threshold: float = 0.0
    config: Sam2DConfig

    def __init__(
        self,
        config: Sam2DConfig,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
    ) -> None:
        super().__init__(config, image_encoder, prompt_encoder, mask_decoder)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(-1, 1, 1), False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``B x 3 x h x w`` 0-255 pixels (``h, w <= S``) and zero-pad to ``S x S``.

        As SAM: ``(x - pixel_mean) / pixel_std``, padding at the bottom and right.
        """
        h, w = x.shape[-2:]
        if h > self.img_size or w > self.img_size:
            raise ValueError(f"image {h} x {w} is larger than the model input {self.img_size}")
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        """SAM's: upscale ``B x M x 4G x 4G`` logits to ``S x S``, crop the unpadded
        ``input_size``, resize to ``original_size`` (bilinear) -> ``B x M x H x W`` logits."""
        masks = F.interpolate(
            masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False
        )
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)

"""2-D mask decoder of SAM: image embedding + prompt tokens -> low-res mask logits and IoU.

Call (SAM's signature)::

    low_res_logits, iou_pred = mask_decoder(
        image_embeddings,          # B x E x G x G (or 1 x ..., shared by all B prompts)
        image_pe,                  # 1 x E x G x G  (prompt_encoder.get_dense_pe())
        sparse_prompt_embeddings,  # B x T x E
        dense_prompt_embeddings,   # B x E x G x G
        multimask_output,          # bool
    )

``low_res_logits`` is ``B x M x 4G x 4G`` and ``iou_pred`` ``B x M`` with ``M = 1`` (the
single-mask token) or ``M = num_multimask_outputs`` when ``multimask_output``. The decoder is the
3-D model's dimension-agnostic :class:`~neurosam3d.model.mask_decoder.TokenMaskDecoder` (its
two-way transformer and token logic; keys as SAM's) with 2-D upscaling layers.
"""

from __future__ import annotations

from torch import nn

from neurosam3d.model.mask_decoder import TokenMaskDecoder
from neurosam3d.model.sam2d.layers import LayerNorm2d


class MaskDecoder(TokenMaskDecoder):
    """SAM's decoder: the 3-D model's :class:`~neurosam3d.model.mask_decoder.TokenMaskDecoder`
    with ``ConvTranspose2d`` and ``LayerNorm2d`` (fp32 statistics) upscaling."""

    upconv = nn.ConvTranspose2d
    norm = LayerNorm2d

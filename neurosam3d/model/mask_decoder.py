"""Mask decoder: image embedding + prompt tokens -> low-resolution mask logits and IoU.

Call::

    low_res_logits, iou_pred = mask_decoder(
        image_embeddings,          # B x E x G x G x G (or 1 x ..., shared by all B prompts)
        image_pe,                  # 1 x E x G x G x G  (prompt_encoder.get_dense_pe())
        sparse_prompt_embeddings,  # B x T x E
        dense_prompt_embeddings,   # B x E x G x G x G
        multimask_output,          # bool
    )

``low_res_logits`` is ``B x M x 4G x 4G x 4G`` and ``iou_pred`` ``B x M`` with ``M = 1`` (the
single-mask token) or ``M = num_multimask_outputs`` (the other tokens) when ``multimask_output``.

:class:`TokenMaskDecoder` is the decoder for any number of spatial axes (its upscaling layers are
class attributes); :class:`MaskDecoder3D` is the 3-D one and
:class:`neurosam3d.model.sam2d.mask_decoder.MaskDecoder` the 2-D one (SAM's), same key names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from neurosam3d.model.common import MLP, LayerNorm3d
from neurosam3d.model.config import ModelConfig
from neurosam3d.model.transformer import TwoWayTransformer3D

if TYPE_CHECKING:
    from neurosam3d.model.sam2d.config import Sam2DConfig


class TokenMaskDecoder(nn.Module):
    """IoU token + ``num_multimask_outputs + 1`` mask tokens through a two-way transformer.

    ``upconv``/``norm``: the transposed convolution and channel-first LayerNorm of the output
    upscaling, which fix the number of spatial axes (set by the subclasses).
    """

    upconv: type[nn.Module]
    norm: type[nn.Module]

    def __init__(self, cfg: ModelConfig | Sam2DConfig) -> None:
        super().__init__()
        dim = cfg.prompt_embed_dim
        self.num_mask_tokens = cfg.num_multimask_outputs + 1
        self.transformer = TwoWayTransformer3D(
            cfg.decoder_depth,
            dim,
            cfg.decoder_num_heads,
            cfg.decoder_mlp_dim,
            cfg.decoder_attention_downsample_rate,
        )
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            self.upconv(dim, dim // 4, kernel_size=2, stride=2),
            self.norm(dim // 4),
            nn.GELU(),
            self.upconv(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim, cfg.iou_head_hidden_dim, self.num_mask_tokens, cfg.iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        picked = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, picked], iou_pred[:, picked]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All mask tokens: logits ``B x num_mask_tokens x (4G)^n``, IoU ``B x num_mask_tokens``."""
        b = sparse.shape[0]
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(
                f"image_embeddings batch {image_embeddings.shape[0]} must be 1 or match the "
                f"prompts' batch {b}"
            )
        output_tokens = torch.cat((self.iou_token.weight, self.mask_tokens.weight), dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
        spatial = tuple(image_embeddings.shape[2:])
        src = image_embeddings.expand(b, -1, *spatial) + dense
        pos_src = image_pe.expand(b, -1, *spatial)
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, -1, *spatial))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        c = upscaled.shape[1]
        masks = (hyper_in @ upscaled.reshape(b, c, -1)).reshape(b, -1, *upscaled.shape[2:])
        return masks, self.iou_prediction_head(iou_token_out)


class MaskDecoder3D(TokenMaskDecoder):
    """The 3-D decoder (SAM-Med3D's): ``ConvTranspose3d`` and ``LayerNorm3d`` upscaling."""

    upconv = nn.ConvTranspose3d
    norm = LayerNorm3d

"""2-D prompt encoder of SAM: points and boxes to sparse tokens, a mask to a dense map.

Call (SAM's signature)::

    sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)

* ``coords``: ``B x N x 2`` float pixel coordinates ``(x, y)`` in the ``S x S`` model input;
  ``labels``: ``B x N``, 1 positive, 0 negative, -1 padding (ignored point).
* ``boxes``: ``B x 4`` pixel corners ``(x0, y0, x1, y1)``.
* ``masks``: ``B x 1 x 4G x 4G`` low-resolution logits of a previous step.

Returns ``sparse``: ``B x T x E`` (``T = N + 1`` with a padding point when no box is given, plus
2 per box) and ``dense``: ``B x E x G x G``. ``get_dense_pe()`` is the ``1 x E x G x G``
positional encoding of the embedding grid. Coordinates use the pixel centre (``+ 0.5``), are
divided by the input size, mapped to ``[-1, 1]`` and projected on random Gaussian frequencies
(features ``[sin, cos]``), in fp32 even under autocast.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neurosam3d.model.sam2d.config import Sam2DConfig
from neurosam3d.model.sam2d.layers import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of ``(x, y)`` coordinates normalised to ``[0, 1]``."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x 2`` coordinates in ``[0, 1]`` -> ``... x 2F`` features."""
        with torch.autocast(coords.device.type, enabled=False):  # phases need fp32
            coords = 2 * coords.float() - 1
            coords = 2 * math.pi * (coords @ self.positional_encoding_gaussian_matrix.float())
            return torch.cat((torch.sin(coords), torch.cos(coords)), dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the pixel centres of an ``H x W`` grid: ``2F x H x W``."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        y = (torch.arange(h, device=matrix.device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=matrix.device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(y, x, indexing="ij")
        return self._encode(torch.stack((xx, yy), dim=-1)).permute(2, 0, 1)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """``B x N x 2`` pixel ``(x, y)`` of an ``H x W`` image -> ``B x N x 2F``."""
        scale = coords.new_tensor((image_size[1], image_size[0]), dtype=torch.float32)
        return self._encode(coords.float() / scale)


class PromptEncoder(nn.Module):
    """Encode point/box/mask prompts for :class:`~neurosam3d.model.sam2d.mask_decoder.MaskDecoder`."""

    def __init__(self, cfg: Sam2DConfig) -> None:
        super().__init__()
        dim = cfg.prompt_embed_dim
        self.embed_dim = dim
        self.input_image_size = (cfg.img_size, cfg.img_size)
        self.image_embedding_size = (cfg.embedding_size, cfg.embedding_size)
        self.mask_input_size = (cfg.low_res_size, cfg.low_res_size)
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        # 0: negative point, 1: positive point, 2 and 3: box corners.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        chans = cfg.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(chans // 4),
            nn.GELU(),
            nn.Conv2d(chans // 4, chans, kernel_size=2, stride=2),
            LayerNorm2d(chans),
            nn.GELU(),
            nn.Conv2d(chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: ``1 x E x G x G``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords.float() + 0.5  # pixel index -> pixel centre
        if pad:
            coords = torch.cat((coords, coords.new_zeros(coords.shape[0], 1, 2)), dim=1)
            labels = torch.cat((labels, -labels.new_ones(labels.shape[0], 1)), dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = emb + torch.where(labels == 0, self.point_embeddings[0].weight, 0.0)
        return emb + torch.where(labels == 1, self.point_embeddings[1].weight, 0.0)

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes.float() + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embed = torch.cat((self.point_embeddings[2].weight, self.point_embeddings[3].weight))
        return emb + corner_embed

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring; with no prompt at all the batch size is 1 (as SAM)."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        weight = self.no_mask_embed.weight
        sparse = weight.new_empty(bs, 0, self.embed_dim)
        if points is not None:
            coords, labels = points
            sparse = torch.cat((sparse, self._embed_points(coords, labels, pad=boxes is None)), 1)
        if boxes is not None:
            sparse = torch.cat((sparse, self._embed_boxes(boxes)), dim=1)
        if masks is not None:
            if tuple(masks.shape[-2:]) != self.mask_input_size:
                raise ValueError(
                    f"mask prompt must be B x 1 x {self.mask_input_size[0]} x "
                    f"{self.mask_input_size[1]}, got {tuple(masks.shape)}"
                )
            dense = self.mask_downscaling(masks)
        else:
            g, gw = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, g, gw)
        return sparse, dense

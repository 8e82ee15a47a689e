"""Prompt encoders: points (and boxes) to sparse tokens, a mask to a dense map, in 2-D or 3-D.

Call (SAM's signature)::

    sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)

For ``n`` spatial axes (``n = 3`` here, ``n = 2`` for
:class:`neurosam3d.model.sam2d.prompt_encoder.PromptEncoder`):

* ``coords``: ``B x N x n`` float positions in the cubic (square) model input of edge ``S``: 3-D
  voxel indices along the input's last three axes (D, H, W), 2-D pixel ``(x, y)``;
  ``labels``: ``B x N`` int, 1 positive, 0 negative, -1 padding (ignored point).
* ``boxes``: ``B x 2n`` corners (3-D ``(d0, h0, w0, d1, h1, w1)``, only for configurations with
  ``box_prompts=True``: the released checkpoints have no box embeddings; 2-D
  ``(x0, y0, x1, y1)``).
* ``masks``: ``B x 1 x L^n`` low-resolution logits of a previous step (``L = low_res_size``).

Returns ``sparse``: ``B x T x E`` (``T = N + 1`` with a padding point when no box is given, plus
2 per box) and ``dense``: ``B x E x G^n``. ``get_dense_pe()`` is the ``1 x E x G^n`` positional
encoding of the embedding grid. A point's encoding uses its voxel/pixel centre (index + 0.5)
divided by ``S``, mapped to ``[-1, 1]`` and projected on random Gaussian frequencies, in fp32
even under autocast; the features are ``[sin, cos, sin]`` in 3-D (three groups of ``E / 3``
fill ``E`` channels) and SAM's ``[sin, cos]`` in 2-D. The dense encoding of the embedding grid
feeds its first two axes swapped ((H, D, W) in 3-D, as the released model does; (x, y) in 2-D,
as SAM); the golden parity fixtures pin both conventions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from neurosam3d.model.common import LayerNorm3d
from neurosam3d.model.config import ModelConfig

if TYPE_CHECKING:
    from neurosam3d.model.sam2d.config import Sam2DConfig


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of ``rank``-D coordinates normalised to ``[0, 1]``."""

    def __init__(self, num_pos_feats: int, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.register_buffer(
            "positional_encoding_gaussian_matrix", torch.randn(rank, num_pos_feats)
        )

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x rank`` coordinates in ``[0, 1]`` -> ``... x (rank F)`` features."""
        with torch.autocast(coords.device.type, enabled=False):  # phases need fp32
            coords = 2 * coords.float() - 1
            coords = 2 * math.pi * (coords @ self.positional_encoding_gaussian_matrix.float())
            waves = (torch.sin(coords), torch.cos(coords))
            return torch.cat([waves[i % 2] for i in range(self.rank)], dim=-1)

    def forward(self, size: tuple[int, ...]) -> torch.Tensor:
        """Encoding of the cell centres of a ``rank``-D grid of ``size``: ``(rank F) x *size``."""
        device = self.positional_encoding_gaussian_matrix.device
        axes = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n for n in size]
        centres = torch.meshgrid(*axes, indexing="ij")
        # The grid's first two axes go to the frequencies swapped: SAM's (x, y) of a 2-D grid,
        # which the released 3-D model kept (its point prompts are not swapped).
        grid = torch.stack((centres[1], centres[0], *centres[2:]), dim=-1)
        return self._encode(grid).permute(self.rank, *range(self.rank))

    def forward_with_coords(self, coords: torch.Tensor, input_size: int) -> torch.Tensor:
        """``B x N x rank`` positions in a cubic (square) input of edge ``input_size``
        -> ``B x N x (rank F)``."""
        return self._encode(coords.float() / input_size)


class TokenPromptEncoder(nn.Module):
    """Encode point/box/mask prompts for a :class:`~neurosam3d.model.mask_decoder.TokenMaskDecoder`.

    ``rank`` (spatial axes), ``conv`` and ``norm`` (the mask downscaling's convolution and
    channel-first LayerNorm) are set by the subclasses. Key names are SAM's in both ranks.
    """

    rank: int
    conv: type[nn.Module]
    norm: type[nn.Module]

    def __init__(self, cfg: ModelConfig | Sam2DConfig, box_prompts: bool) -> None:
        super().__init__()
        dim = cfg.prompt_embed_dim
        self.embed_dim = dim
        self.input_size = cfg.img_size
        self.embedding_size = cfg.embedding_size
        self.low_res_size = cfg.low_res_size
        self.pe_layer = PositionEmbeddingRandom(dim // self.rank, self.rank)
        # 0: negative point, 1: positive point, (2, 3): box corners when enabled.
        num_point_embeddings = 4 if box_prompts else 2
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, dim) for _ in range(num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, dim)
        chans = cfg.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            self.conv(1, chans // 4, kernel_size=2, stride=2),
            self.norm(chans // 4),
            nn.GELU(),
            self.conv(chans // 4, chans, kernel_size=2, stride=2),
            self.norm(chans),
            nn.GELU(),
            self.conv(chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    @property
    def supports_boxes(self) -> bool:
        return len(self.point_embeddings) == 4

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: ``1 x E x G^rank``."""
        return self.pe_layer((self.embedding_size,) * self.rank).unsqueeze(0)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords.float() + 0.5  # voxel / pixel index -> its centre
        if pad:
            coords = torch.cat((coords, coords.new_zeros(coords.shape[0], 1, self.rank)), dim=1)
            labels = torch.cat((labels, -labels.new_ones(labels.shape[0], 1)), dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = emb + torch.where(labels == 0, self.point_embeddings[0].weight, 0.0)
        return emb + torch.where(labels == 1, self.point_embeddings[1].weight, 0.0)

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes.float() + 0.5).reshape(-1, 2, self.rank)
        emb = self.pe_layer.forward_with_coords(corners, self.input_size)
        corner_embed = torch.cat((self.point_embeddings[2].weight, self.point_embeddings[3].weight))
        return emb + corner_embed

    def _batch_without_prompts(self) -> int:
        """The batch size when no prompt at all is given (3-D: an error)."""
        raise ValueError("give at least one of points, boxes, masks")

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring."""
        present = [
            p for p in (points[0] if points is not None else None, boxes, masks) if p is not None
        ]
        bs = present[0].shape[0] if present else self._batch_without_prompts()
        weight = self.no_mask_embed.weight
        sparse = weight.new_empty(bs, 0, self.embed_dim)
        if points is not None:
            coords, labels = points
            sparse = torch.cat((sparse, self._embed_points(coords, labels, pad=boxes is None)), 1)
        if boxes is not None:
            if not self.supports_boxes:
                raise ValueError(
                    "this model has no box embeddings (the released SAM-Med3D architecture takes "
                    "points and masks only); build a configuration with box_prompts=True"
                )
            sparse = torch.cat((sparse, self._embed_boxes(boxes)), dim=1)
        spatial = (1,) * self.rank
        if masks is not None:
            low = self.low_res_size
            if tuple(masks.shape[1:]) != (1,) + (low,) * self.rank:
                raise ValueError(
                    f"mask prompt must be B x 1 x {' x '.join([str(low)] * self.rank)}, "
                    f"got {tuple(masks.shape)}"
                )
            dense = self.mask_downscaling(masks)
        else:
            grid = (self.embedding_size,) * self.rank
            dense = weight.reshape(1, -1, *spatial).expand(bs, -1, *grid)
        return sparse, dense


class PromptEncoder3D(TokenPromptEncoder):
    """The 3-D prompt encoder (SAM-Med3D's): ``Conv3d`` / ``LayerNorm3d`` mask downscaling,
    box embeddings only with ``box_prompts``."""

    rank = 3
    conv = nn.Conv3d
    norm = LayerNorm3d

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, box_prompts=cfg.box_prompts)

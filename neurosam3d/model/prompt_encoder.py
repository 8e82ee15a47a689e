"""3-D prompt encoder: points (and optional boxes) to sparse tokens, a mask to a dense map.

Call::

    sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)

* ``coords``: ``B x N x 3`` float voxel indices along the input's last three axes (D, H, W);
  ``labels``: ``B x N`` int, 1 positive, 0 negative, -1 padding (ignored point).
* ``boxes``: ``B x 6`` voxel corners ``(d0, h0, w0, d1, h1, w1)``, only for configurations with
  ``box_prompts=True`` (the released checkpoints have no box embeddings).
* ``masks``: ``B x 1 x L x L x L`` low-resolution logits of a previous step (``L = low_res_size``).

Returns ``sparse``: ``B x T x E`` (``T = N + 1`` with a padding point when no box is given) and
``dense``: ``B x E x G x G x G``. ``get_dense_pe()`` is the ``1 x E x G x G x G`` positional
encoding of the embedding grid. A point's encoding uses its voxel centre (index + 0.5) divided
by the input size, mapped to ``[-1, 1]`` and projected on random Gaussian frequencies; the
features are ``[sin, cos, sin]`` so that three groups of ``E / 3`` fill ``E`` channels. The dense
encoding of the embedding grid feeds its coordinates in (H, D, W) order, as the released model
does (the golden parity fixture pins both conventions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neurosam3d.model.common import LayerNorm3d
from neurosam3d.model.config import ModelConfig


class PositionEmbeddingRandom3D(nn.Module):
    """Random Fourier features of 3-D coordinates normalised to ``[0, 1]``."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x 3`` coordinates in ``[0, 1]`` -> ``... x 3F`` features."""
        with torch.autocast(coords.device.type, enabled=False):  # phases need fp32
            coords = 2 * coords.float() - 1
            coords = coords @ self.positional_encoding_gaussian_matrix.float()
            coords = 2 * math.pi * coords
            return torch.cat((torch.sin(coords), torch.cos(coords), torch.sin(coords)), dim=-1)

    def forward(self, size: tuple[int, int, int]) -> torch.Tensor:
        """Encoding of the centres of a ``D x H x W`` grid: ``3F x D x H x W``."""
        matrix = self.positional_encoding_gaussian_matrix
        axes = [(torch.arange(n, device=matrix.device, dtype=matrix.dtype) + 0.5) / n for n in size]
        c0, c1, c2 = torch.meshgrid(*axes, indexing="ij")
        # The released model feeds the grid's first two axes to the frequencies swapped (a 2-D
        # x/y habit); point prompts are not swapped. Kept for weight compatibility.
        grid = torch.stack((c1, c0, c2), dim=-1)
        return self._encode(grid).permute(3, 0, 1, 2)

    def forward_with_coords(self, coords: torch.Tensor, input_size: int) -> torch.Tensor:
        """``B x N x 3`` coordinates in voxels of a ``input_size^3`` volume -> ``B x N x 3F``."""
        return self._encode(coords.float() / input_size)


class PromptEncoder3D(nn.Module):
    """Encode point/box/mask prompts for :class:`~neurosam3d.model.mask_decoder.MaskDecoder3D`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dim = cfg.prompt_embed_dim
        self.embed_dim = dim
        self.input_size = cfg.img_size
        self.embedding_size = cfg.embedding_size
        self.pe_layer = PositionEmbeddingRandom3D(dim // 3)
        # 0: negative point, 1: positive point, (2, 3): box corners when enabled.
        num_point_embeddings = 4 if cfg.box_prompts else 2
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, dim) for _ in range(num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, dim)
        chans = cfg.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(chans // 4),
            nn.GELU(),
            nn.Conv3d(chans // 4, chans, kernel_size=2, stride=2),
            LayerNorm3d(chans),
            nn.GELU(),
            nn.Conv3d(chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    @property
    def supports_boxes(self) -> bool:
        return len(self.point_embeddings) == 4

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: ``1 x E x G x G x G``."""
        return self.pe_layer((self.embedding_size,) * 3).unsqueeze(0)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords + 0.5  # voxel index -> voxel centre
        if pad:
            coords = torch.cat((coords, coords.new_zeros(coords.shape[0], 1, 3)), dim=1)
            labels = torch.cat((labels, -labels.new_ones(labels.shape[0], 1)), dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        emb = emb + torch.where(labels == 0, self.point_embeddings[0].weight, 0.0)
        return emb + torch.where(labels == 1, self.point_embeddings[1].weight, 0.0)

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes.float() + 0.5).reshape(-1, 2, 3)
        emb = self.pe_layer.forward_with_coords(corners, self.input_size)
        corner_embed = torch.cat((self.point_embeddings[2].weight, self.point_embeddings[3].weight))
        return emb + corner_embed

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring; at least one prompt must be given."""
        present = [
            p for p in (points[0] if points is not None else None, boxes, masks) if p is not None
        ]
        if not present:
            raise ValueError("give at least one of points, boxes, masks")
        bs = present[0].shape[0]
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
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            g = self.embedding_size
            dense = weight.reshape(1, -1, 1, 1, 1).expand(bs, -1, g, g, g)
        return sparse, dense

"""Rank-generic pieces of the windowed ViT image encoders (3-D SAM-Med3D, 2-D SAM/SAM-Med2D).

Both encoders map a ``B x C x S^n`` input (``n`` spatial axes, ``S = img_size``) to a
``B x prompt_embed_dim x G^n`` embedding (``G = S // patch_size``): patch embedding, learned
absolute position embedding (channels last, ``1 x G^n x D``), ``depth`` pre-norm blocks with
decomposed relative positions, then a two-convolution neck. What differs between the ranks is
the attention and the windowing of a block (:mod:`neurosam3d.model.image_encoder`,
:mod:`neurosam3d.model.sam2d.image_encoder`); key names are SAM's in both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from neurosam3d.model.common import MLPBlock, run_blocks

if TYPE_CHECKING:
    from neurosam3d.model.config import ModelConfig
    from neurosam3d.model.sam2d.config import Sam2DConfig

_CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather relative-position embeddings for query positions ``[0, q_size)``.

    Args:
        q_size: number of query positions along the axis (``<= k_size``).
        k_size: number of key positions along the axis; ``rel_pos`` has ``2 * k_size - 1`` rows.
        rel_pos: ``(2 * k_size - 1) x head_dim`` table.

    Returns:
        ``q_size x k_size x head_dim``, entry ``[i, j] = rel_pos[i - j + k_size - 1]``.
    """
    q = torch.arange(q_size, device=rel_pos.device)[:, None]
    k = torch.arange(k_size, device=rel_pos.device)[None, :]
    return rel_pos[q - k + (k_size - 1)]


class RelPosAttention(nn.Module):
    """Multi-head self-attention weights with one relative-position table per spatial axis.

    ``qkv``, ``proj`` and ``rel_pos_{axis}`` for each letter of ``axes`` (``"dhw"``: 3-D,
    ``"hw"``: 2-D), each table ``(2 * rel_size - 1) x head_dim``; the subclasses' ``forward``
    applies them.
    """

    def __init__(self, dim: int, num_heads: int, rel_size: int, axes: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        for axis in axes:
            table = nn.Parameter(torch.zeros(2 * rel_size - 1, head_dim))
            self.register_parameter(f"rel_pos_{axis}", table)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``B x *grid x C`` tokens -> ``q, k, v``, each ``B x heads x n x head_dim``."""
        b, c = x.shape[0], x.shape[-1]
        qkv = self.qkv(x).reshape(b, -1, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, shape
    ) -> torch.Tensor:
        """SDPA with the additive ``bias``, heads merged back to ``shape`` (``B x *grid x C``)
        and projected."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(shape))


class ViTBlock(nn.Module):
    """Pre-norm transformer block's layers; ``window_size=0`` means global attention.

    ``attention`` (a :class:`RelPosAttention` taking ``dim, num_heads, rel_size``) is set by
    the subclasses, which window and apply it in ``forward``.
    """

    attention: type[nn.Module]

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, grid_size: int
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = self.attention(dim, num_heads, window_size if window_size > 0 else grid_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))


class PatchEmbed(nn.Module):
    """Non-overlapping patches of a ``B x C x S^rank`` input -> ``B x G^rank x embed_dim``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, rank: int) -> None:
        super().__init__()
        self.proj = _CONVS[rank](in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).movedim(1, -1)


class WindowedViTEncoder(nn.Module):
    """Input ``B x in_chans x S^rank`` -> embedding ``B x prompt_embed_dim x G^rank``.

    Subclasses set ``rank``, ``norm`` (the neck's channel-first LayerNorm) and build block
    ``i`` (:meth:`_block`).
    """

    rank: int
    norm: type[nn.Module]

    def __init__(self, cfg: ModelConfig | Sam2DConfig, in_chans: int) -> None:
        super().__init__()
        self.img_size = cfg.img_size
        self.grad_checkpointing = False
        grid, dim = cfg.embedding_size, cfg.encoder_embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, in_chans, dim, self.rank)
        self.pos_embed = nn.Parameter(torch.zeros(1, *(grid,) * self.rank, dim))
        self.blocks = nn.ModuleList(self._block(cfg, i) for i in range(cfg.encoder_depth))
        out, conv = cfg.prompt_embed_dim, _CONVS[self.rank]
        self.neck = nn.Sequential(
            conv(dim, out, kernel_size=1, bias=False),
            self.norm(out),
            conv(out, out, kernel_size=3, padding=1, bias=False),
            self.norm(out),
        )

    def _block(self, cfg: ModelConfig | Sam2DConfig, i: int) -> nn.Module:
        """Encoder block ``i`` of ``cfg``."""
        raise NotImplementedError

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in the backward pass (less memory, ~1/3 more compute)."""
        self.grad_checkpointing = enabled

    def _check_input(self, x: torch.Tensor) -> None:
        """``ValueError`` when ``x`` is not an input of this encoder."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.patch_embed(x) + self.pos_embed
        x = run_blocks(self.blocks, x, self.grad_checkpointing)
        return self.neck(x.movedim(-1, 1))

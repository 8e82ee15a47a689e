"""3-D ViT image encoder (SAM-Med3D "vit_b_ori" layout), with an exact fast windowed attention.

``ImageEncoderViT3D(x)`` maps a ``B x in_chans x S x S x S`` volume (``S = img_size``) to a
``B x out_chans x G x G x G`` embedding (``G = S // patch_size``): patch embedding, learned
absolute position embedding, ``depth`` pre-norm blocks with decomposed 3-D relative positions,
then a convolutional neck (the rank-generic layers of :mod:`neurosam3d.model.vit`, shared with
the 2-D SAM encoder).

Windowed blocks of the released model pad the ``8^3`` token grid (after ``norm1``) with zeros to
one ``14^3`` window and attend without a mask, so the 2,232 padded tokens, whose key and value are
just the ``qkv`` bias, take part as keys. Here only the real tokens are queries, and all padded
keys are folded into one extra key: its key and value are the bias, and its additive bias is the
log-sum-exp of the padded keys' relative-position terms, computed per axis. The result is the
padded computation's output for the real tokens, without materialising the padded window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from neurosam3d.model.common import LayerNorm3d
from neurosam3d.model.config import ModelConfig
from neurosam3d.model.vit import (
    RelPosAttention,
    ViTBlock,
    WindowedViTEncoder,
    relative_position_table,
)

if TYPE_CHECKING:
    from neurosam3d.model.sam2d.config import Sam2DConfig


class Attention3D(RelPosAttention):
    """Multi-head self-attention with the released model's 3-D relative-position bias.

    ``forward(x, window)`` takes ``B x S x S x S x C`` tokens (already normalised, cubic). With
    ``window=None`` the tokens attend to each other (tables of ``2 * S - 1`` rows). With
    ``window=w > S`` they are the real part of a zero-padded ``w^3`` window and the result equals
    the padded computation restricted to them.

    The released model adds its per-axis terms ``rel_a[q, k] = q_vec(q) . P_a[q_a - k]`` to the
    ``q x k`` logits through shifted broadcasts, which over a cubic window amount to (query
    ``i = (i0, i1, i2)``, key ``j = (j0, j1, j2)``, ``q(.)`` the query vector at a position)::

        bias[i, j] = q(i0, i1, i2) . P_d[i0 - j2] + q(i0, i1, j0) . P_h[i1 - j2]
                   + q(i0, i1, j1) . P_w[j1 - j2]

    This is the function its weights were trained with, so it is reproduced exactly (the golden
    parity fixture pins it). For a fixed ``j2`` the bias splits into terms in ``j0`` and ``j1``
    alone, which is what lets :meth:`_fold_padding` sum over the padded keys per axis.
    """

    def __init__(self, dim: int, num_heads: int, rel_size: int) -> None:
        super().__init__(dim, num_heads, rel_size, "dhw")

    def _bias_terms(
        self, q_grid: torch.Tensor, q_line: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three bias terms in fp32 (``g`` real, ``s`` window positions per axis).

        Args:
            q_grid: ``b x g x g x g x c`` real query vectors.
            q_line: ``b x g x g x s x c`` query vectors along the last axis, padded ones included.

        Returns:
            ``U[b, i0, i1, i2, j2]`` (``b x g x g x g x s``), ``V[b, i0, i1, j0, j2]`` and
            ``W[b, i0, i1, j1, j2]`` (``b x g x g x s x s``).
        """
        g, s = q_grid.shape[1], q_line.shape[3]
        with torch.autocast(q_grid.device.type, enabled=False):  # keep the bias in fp32
            q_grid, q_line = q_grid.float(), q_line.float()
            table_d = relative_position_table(g, s, self.rel_pos_d.float())
            table_h = relative_position_table(g, s, self.rel_pos_h.float())
            table_w = relative_position_table(s, s, self.rel_pos_w.float())
            u = torch.einsum("bxyzc,xkc->bxyzk", q_grid, table_d)
            v = torch.einsum("bxytc,ykc->bxytk", q_line, table_h)
            w = torch.einsum("bxytc,tkc->bxytk", q_line, table_w)
        return u, v, w

    def forward(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        b, g = x.shape[:2]
        n, heads = g**3, self.num_heads
        q, k, v = self._split_heads(x)  # each b x heads x n x head_dim
        s = window or g
        q_grid = q.reshape(b * heads, g, g, g, -1)
        q_line = q_grid
        if s > g:  # padded positions hold the bias of q
            bias_q = self.qkv.bias.reshape(3, heads, 1, 1, 1, -1)[0].to(q.dtype)
            pad = bias_q.expand(b, heads, g, g, s - g, -1).reshape(b * heads, g, g, s - g, -1)
            q_line = torch.cat((q_grid, pad), dim=3)
        u, vv, ww = self._bias_terms(q_grid, q_line)
        bias = (
            u[:, :, :, :, None, None, :g]
            + vv[:, :, :, None, :g, None, :g]
            + ww[:, :, :, None, None, :g, :g]
        ).reshape(b, heads, n, n)
        if s > g:
            k, v, bias = self._fold_padding(q, k, v, bias, (u, vv, ww))
        return self._attend(q, k, v, bias, x.shape)

    def _fold_padding(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor,
        terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append one key standing for every padded key of the window.

        A padded key's logit is ``scale q.b_k + bias[i, j]`` and its value ``b_v``, so together
        the padded keys act as one key ``b_k`` with value ``b_v`` and additive bias
        ``log sum_{j padded} exp(bias[i, j])``. For fixed ``j2`` that sum is
        ``exp(U[j2]) * sum_{j0, j1} exp(V[j0, j2] + W[j1, j2])`` over the padded ``(j0, j1)``:
        all of them when ``j2`` is padded, else the disjoint union "``j0`` padded" and
        "``j0`` real, ``j1`` padded". Everything stays in log space, without cancellation.
        """
        b, heads, n, head_dim = q.shape
        u, vv, ww = terms
        g = u.shape[1]
        v_lo, v_hi, v_all = (
            vv[..., :g, :].logsumexp(3),
            vv[..., g:, :].logsumexp(3),
            vv.logsumexp(3),
        )
        w_hi, w_all = ww[..., g:, :].logsumexp(3), ww.logsumexp(3)
        per_j2 = torch.cat(  # b x g x g x s: log sum over the padded (j0, j1) for each j2
            (
                torch.logaddexp(v_hi + w_all, v_lo + w_hi)[..., :g],
                v_all[..., g:] + w_all[..., g:],
            ),
            dim=-1,
        )
        padded = (u + per_j2[:, :, :, None, :]).logsumexp(-1)  # b x g x g x g
        bias = torch.cat((bias, padded.reshape(b, heads, n, 1)), dim=-1)
        bias_k, bias_v = self.qkv.bias.reshape(3, heads, 1, head_dim)[1:].to(q.dtype)
        k = torch.cat((k, bias_k.expand(b, heads, 1, head_dim)), dim=2)
        v = torch.cat((v, bias_v.expand(b, heads, 1, head_dim)), dim=2)
        return k, v, bias


class Block3D(ViTBlock):
    """Pre-norm transformer block; ``window_size=0`` means global attention."""

    attention = Attention3D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x G x G x G x C`` tokens -> same shape."""
        shortcut = x
        x = self.norm1(x)
        ws = self.window_size
        grid = x.shape[1]
        if ws <= 0 or ws == grid:
            x = self.attn(x)
        elif ws > grid:
            x = self.attn(x, window=ws)
        else:
            x = _window_unpartition(self.attn(_window_partition(x, ws)), x.shape)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


def _window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``B x D x H x W x C`` (each of D, H, W a multiple of ``ws``) -> ``(B * nW) x ws^3 x C``."""
    b, d, h, w, c = x.shape
    x = x.view(b, d // ws, ws, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws, ws, ws, c)


def _window_unpartition(windows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_window_partition` back to ``shape`` (``B x D x H x W x C``)."""
    b, d, h, w, c = shape
    ws = windows.shape[1]
    x = windows.view(b, d // ws, h // ws, w // ws, ws, ws, ws, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, c)


class ImageEncoderViT3D(WindowedViTEncoder):
    """Volume ``B x in_chans x S^3`` -> embedding ``B x prompt_embed_dim x G^3`` (float)."""

    rank = 3
    norm = LayerNorm3d

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cfg.in_chans)

    def _block(self, cfg: ModelConfig | Sam2DConfig, i: int) -> nn.Module:
        window = 0 if i in cfg.encoder_global_attn_indexes else cfg.encoder_window_size
        grid = cfg.embedding_size
        return Block3D(
            cfg.encoder_embed_dim, cfg.encoder_num_heads, cfg.encoder_mlp_ratio, window, grid
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.shape[-3:] != (self.img_size,) * 3:
            raise ValueError(
                f"image encoder expects B x C x {self.img_size}^3 input, got {tuple(x.shape)}"
            )

"""Benchmark: the fast exact image encoder vs a straightforward padded reference.

The reference below is the released model's windowed attention written plainly: pad the token
grid after ``norm1`` to whole windows, attend over every padded token with the full decomposed
relative-position bias, crop. It uses the same weights as ours (the same module's parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurosam3d.model.image_encoder import Attention3D, Block3D, ImageEncoderViT3D


def _rel_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    q = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    idx = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[idx.long()]


def reference_attention(attn: Attention3D, x: torch.Tensor) -> torch.Tensor:
    """Plain attention over all tokens of ``x`` (``B x D x H x W x C``, padding included)."""
    b, d, h, w, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, d * h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, d * h * w, -1).unbind(0)
    scale = q.shape[-1] ** -0.5
    logits = (q * scale) @ k.transpose(-2, -1)
    r_q = q.reshape(b * heads, d, h, w, -1)
    rel_d = torch.einsum("bdhwc,dkc->bdhwk", r_q, _rel_table(d, d, attn.rel_pos_d))
    rel_h = torch.einsum("bdhwc,hkc->bdhwk", r_q, _rel_table(h, h, attn.rel_pos_h))
    rel_w = torch.einsum("bdhwc,wkc->bdhwk", r_q, _rel_table(w, w, attn.rel_pos_w))
    # The released model's broadcast, verbatim in effect: it shifts the per-axis terms against
    # the key axes (see Attention3D), and its weights were trained with exactly this.
    logits = (
        logits.view(b * heads, d, h, w, d, h, w)
        + rel_d[:, :, :, :, None, None]
        + rel_h[:, :, :, None, :, None]
        + rel_w[:, :, :, None, None, :]
    ).view(b * heads, d * h * w, d * h * w)
    out = (logits.softmax(dim=-1) @ v).view(b, heads, d, h, w, -1)
    return attn.proj(out.permute(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, c))


def reference_block(blk: Block3D, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = blk.norm1(x)
    ws = blk.window_size
    if ws > 0:
        b, d, h, w, c = x.shape
        pd, ph, pw = (-d) % ws, (-h) % ws, (-w) % ws
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
        dp, hp, wp = d + pd, h + ph, w + pw
        win = x.view(b, dp // ws, ws, hp // ws, ws, wp // ws, ws, c)
        win = win.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws, ws, ws, c)
        win = reference_attention(blk.attn, win)
        x = win.view(b, dp // ws, hp // ws, wp // ws, ws, ws, ws, c)
        x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, c)[:, :d, :h, :w]
    else:
        x = reference_attention(blk.attn, x)
    x = shortcut + x
    return x + blk.mlp(blk.norm2(x))


def reference_encoder(enc: ImageEncoderViT3D, image: torch.Tensor) -> torch.Tensor:
    """The padded reference forward of ``enc`` (same weights): ``B x C x S^3 -> B x E x G^3``."""
    x = enc.patch_embed(image) + enc.pos_embed
    for blk in enc.blocks:
        x = reference_block(blk, x)
    return enc.neck(x.permute(0, 4, 1, 2, 3))

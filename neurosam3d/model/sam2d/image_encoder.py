"""2-D ViT image encoder of SAM (and SAM-Med2D's adapter variant), attention through SDPA.

``ImageEncoderViT(x)`` maps a normalised ``B x 3 x S x S`` image (``S = img_size``) to a
``B x prompt_embed_dim x G x G`` embedding (``G = S // patch_size``): patch embedding, learned
absolute position embedding, ``depth`` pre-norm blocks with SAM's decomposed relative position
bias, then a convolutional neck (the rank-generic layers of :mod:`neurosam3d.model.vit`, shared
with the 3-D encoder). Key names and shapes are SAM's.

Windowed blocks work as SAM does: the ``G x G`` tokens (after ``norm1``) are zero-padded at the
bottom/right to a multiple of the window (``64 -> 70`` for SAM, ``16 -> 28`` for SAM-Med2D),
split into windows, and every token of a window (padded ones included, unmasked) is a key. The
relative position bias ``q . R_h[i_h - j_h] + q . R_w[i_w - j_w]`` is computed in fp32 and passed
to ``scaled_dot_product_attention`` as an additive mask, which equals SAM's
``softmax(scale q k^T + bias) v``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from neurosam3d.model.sam2d.config import Sam2DConfig
from neurosam3d.model.sam2d.layers import LayerNorm2d
from neurosam3d.model.vit import (
    RelPosAttention,
    ViTBlock,
    WindowedViTEncoder,
    relative_position_table,
)

if TYPE_CHECKING:
    from neurosam3d.model.config import ModelConfig


class Attention2D(RelPosAttention):
    """Multi-head self-attention over a ``B x H x W x C`` token grid with SAM's relative bias.

    ``rel_size`` is the grid edge the tables were built for (the window, or ``G`` for global
    blocks); the tables have ``2 * rel_size - 1`` rows.
    """

    def __init__(self, dim: int, num_heads: int, rel_size: int) -> None:
        super().__init__(dim, num_heads, rel_size, "hw")

    def _relative_bias(self, q: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``q``: ``b x heads x (h w) x c`` -> fp32 bias ``b x heads x (h w) x (h w)``."""
        b, heads, n, c = q.shape
        if self.rel_pos_h.shape[0] != 2 * h - 1 or self.rel_pos_w.shape[0] != 2 * w - 1:
            raise ValueError(
                f"relative position tables of {self.rel_pos_h.shape[0]} rows do not fit a "
                f"{h} x {w} token grid"
            )
        with torch.autocast(q.device.type, enabled=False):  # keep the bias in fp32
            r_q = q.float().reshape(b * heads, h, w, c)
            table_h = relative_position_table(h, h, self.rel_pos_h.float())
            table_w = relative_position_table(w, w, self.rel_pos_w.float())
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, table_h)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, table_w)
            bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
        return bias.reshape(b, heads, n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x H x W x C`` -> ``B x H x W x C``."""
        h, w = x.shape[1:3]
        q, k, v = self._split_heads(x)  # each b x heads x n x head_dim
        return self._attend(q, k, v, self._relative_bias(q, h, w), x.shape)


class Adapter(nn.Module):
    """SAM-Med2D's encoder adapter on ``B x H x W x C`` tokens ``n`` (the block's ``norm2(x)``).

    Channel gate ``c = sigmoid(W2 relu(W1 mean_hw(n))) * n``, spatial branch
    ``s = relu(deconv(relu(conv(c))))``, output ``norm(n + s)`` (LayerNorm over channels, default
    eps). The skip adds the *un-gated* ``n``, as SAM-Med2D's ``Adapter_Layer`` does
    (``x = x + x_spatial``); the golden fixture's numbers confirm it (``c + s``, which the shared
    fixture's README wrote, misses them by 25 % of the embedding's range; the copy in
    ``tests/fixtures/sam_med2d_parity/README.md`` says ``n + s``).
    """

    def __init__(self, dim: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        gated = x * self.channel(x.mean(dim=(2, 3)))[:, :, None, None]
        out = x + self.spatial(gated)
        return self.norm(out.permute(0, 2, 3, 1))


def window_partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad ``B x H x W x C`` to multiples of ``ws``; return ``(B nW) x ws x ws x C`` and
    the padded ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: back to ``B x H x W x C`` without the padding."""
    (hp, wp), (h, w) = padded, size
    ws = windows.shape[1]
    b = windows.shape[0] // ((hp // ws) * (wp // ws))
    x = windows.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :h, :w]


class Block2D(ViTBlock):
    """Pre-norm ViT block; ``window_size=0`` means global attention; optional adapter."""

    attention = Attention2D

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        grid_size: int,
        adapter_ratio: float | None,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, window_size, grid_size)
        if adapter_ratio is not None:
            self.Adapter = Adapter(dim, adapter_ratio)  # SAM-Med2D's key name
        else:
            self.Adapter = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x G x G x C`` tokens -> same shape."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            size = (x.shape[1], x.shape[2])
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        normed = self.norm2(x)
        x = x + self.mlp(normed)
        if self.Adapter is not None:
            x = x + self.Adapter(normed)
        return x


class ImageEncoderViT(WindowedViTEncoder):
    """Image ``B x 3 x S x S`` -> embedding ``B x prompt_embed_dim x G x G``."""

    rank = 2
    norm = LayerNorm2d

    def __init__(self, cfg: Sam2DConfig) -> None:
        super().__init__(cfg, 3)

    def _block(self, cfg: ModelConfig | Sam2DConfig, i: int) -> nn.Module:
        assert isinstance(cfg, Sam2DConfig)
        return Block2D(
            cfg.encoder_embed_dim,
            cfg.encoder_num_heads,
            cfg.encoder_mlp_ratio,
            0 if i in cfg.encoder_global_attn_indexes else cfg.encoder_window_size,
            cfg.embedding_size,
            cfg.adapter_ratio if cfg.encoder_adapters else None,
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.img_size,) * 2:
            raise ValueError(
                f"image encoder expects B x 3 x {self.img_size} x {self.img_size} input, "
                f"got {tuple(x.shape)}"
            )

"""3DINO (3-D DINOv2) ViT image encoder: the seed's "DinoV2" backbone plus the SAM neck.

``DinoImageEncoder3D(x)`` maps a ``B x in_chans x S^3`` volume to a ``B x prompt_embed_dim x G^3``
embedding (``G = S // patch_size``), as the seed does with a 3DINO ViT-L:

* ``backbone`` (:class:`DinoVisionTransformer3D`, state-dict keys and shapes exactly those of a
  3DINO ``vit_large_3d`` teacher backbone, the parity fixture pins them): patch embedding
  (``Conv3d`` stride ``patch_size``), a class token, a learned absolute position embedding laid
  out for ``encoder_pos_embed_size``^3 patches (resized trilinearly for other grids, class-token
  part kept), pre-norm blocks with LayerScale on both residual branches, a final LayerNorm;
* ``neck``: the patch tokens as a ``B x C x G^3`` volume, a 1x1x1 ``Conv3d`` ``C -> E`` without
  bias and a channel :class:`~neurosam3d.model.common.LayerNorm3d`.

Attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU, in fp32
and under bf16 autocast). ``set_activation_checkpointing(True)`` recomputes each block's
activations in the backward pass (training memory) instead of storing them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurosam3d.model.common import LayerNorm3d, run_blocks
from neurosam3d.model.config import ModelConfig

#: LayerScale initialisation of a fresh backbone (3DINO's ``layerscale: 1e-5``)
LAYERSCALE_INIT = 1e-5
#: offset DINOv2 adds to the target grid when it computes the resize factor
INTERPOLATE_OFFSET = 0.1


class LayerScale(nn.Module):
    """Per-channel scale ``gamma * x`` of a residual branch."""

    def __init__(self, dim: int, init_values: float = LAYERSCALE_INIT) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DinoMlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` (key names of DINOv2's ``Mlp``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DinoAttention(nn.Module):
    """Multi-head self-attention over ``B x N x C`` tokens (no positional bias), fused SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each b x heads x n x head_dim
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DinoBlock3D(nn.Module):
    """``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))`` on ``B x N x C`` tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoPatchEmbed3D(nn.Module):
    """``B x C x D x H x W`` -> ``B x (D/p * H/p * W/p) x dim`` tokens, C order over D, H, W."""

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer3D(nn.Module):
    """The 3DINO ViT backbone (``vit_large_3d`` for :data:`MODEL_CONFIGS` ``"dinov2_vitl3d"``).

    ``patch_tokens(x)``: ``B x in_chans x D x H x W`` (each a multiple of ``patch_size``) ->
    ``B x (D/p)(H/p)(W/p) x embed_dim``, the final-normed patch tokens (3DINO's
    ``x_norm_patchtokens``); ``forward_features(x)`` also returns ``x_norm_clstoken`` ``B x C``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dim, grid = cfg.encoder_embed_dim, cfg.pos_embed_size
        self.patch_size = cfg.patch_size
        self.pos_grid = grid
        self.grad_checkpointing = False
        device = torch.get_default_device()  # "meta" inside `with torch.device("meta")`
        with torch.device("meta"):  # no default init of 300 M values: _init_weights sets them
            self._build(cfg, dim, grid)
        self.to_empty(device=device)
        if device.type != "meta":
            self._init_weights()

    def _build(self, cfg: ModelConfig, dim: int, grid: int) -> None:
        # Attribute order = the state dict's key order in 3DINO checkpoints.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid**3, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # masked-image pretraining only
        self.patch_embed = DinoPatchEmbed3D(cfg.patch_size, cfg.in_chans, dim)
        blocks = [
            DinoBlock3D(dim, cfg.encoder_num_heads, cfg.encoder_mlp_ratio)
            for _ in range(cfg.encoder_depth)
        ]
        chunks = cfg.encoder_block_chunks
        if chunks:  # chunk c: identities for the earlier blocks, then its own (DINOv2's BlockChunk)
            size = cfg.encoder_depth // chunks
            self.blocks = nn.ModuleList(
                nn.ModuleList([nn.Identity()] * (c * size) + blocks[c * size : (c + 1) * size])
                for c in range(chunks)
            )
        else:
            self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _init_weights(self) -> None:
        """DINOv2's initialisation: N(0, 0.02) for linear layers, the patch embedding and the
        position embedding (its ``trunc_normal_(std=0.02)`` truncates at +-2, i.e. 100 std:
        a plain normal), N(0, 1e-6) class token, zero biases and mask token, unit norms,
        LayerScale 1e-5."""
        with torch.no_grad():
            for name, tensor in self.named_parameters():
                if name.endswith("gamma"):
                    tensor.fill_(LAYERSCALE_INIT)
                elif name == "cls_token":
                    tensor.normal_(std=1e-6)
                elif name.endswith(".bias") or name == "mask_token":
                    tensor.zero_()
                elif tensor.ndim == 1:  # LayerNorm weights
                    tensor.fill_(1.0)
                else:
                    tensor.normal_(std=0.02)

    def _flat_blocks(self) -> list[nn.Module]:
        if self.blocks and isinstance(self.blocks[0], nn.ModuleList):
            return [b for chunk in self.blocks for b in chunk if not isinstance(b, nn.Identity)]
        return list(self.blocks)

    def interpolate_pos_encoding(
        self, grid: tuple[int, int, int], dtype: torch.dtype
    ) -> torch.Tensor:
        """Position embedding ``1 x (1 + d h w) x C`` for a ``d x h x w`` patch grid.

        The stored grid is used as is; otherwise its patch part is resized with
        ``interpolate(scale_factor=(g + 0.1) / stored, mode="trilinear")`` per axis (3DINO's
        rule, fp32), the class-token part kept.
        """
        if grid == (self.pos_grid,) * 3:
            return self.pos_embed.to(dtype)
        pos = self.pos_embed.float()
        dim, m = pos.shape[-1], self.pos_grid
        patch = pos[:, 1:].reshape(1, m, m, m, dim).permute(0, 4, 1, 2, 3)
        with torch.autocast(pos.device.type, enabled=False):
            patch = F.interpolate(
                patch,
                scale_factor=tuple((g + INTERPOLATE_OFFSET) / m for g in grid),
                mode="trilinear",
                align_corners=False,
            )
        if tuple(patch.shape[-3:]) != grid:
            raise RuntimeError(f"position embedding resized to {patch.shape[-3:]}, not {grid}")
        patch = patch.permute(0, 2, 3, 4, 1).reshape(1, -1, dim)
        return torch.cat((pos[:, :1], patch), dim=1).to(dtype)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x_norm_clstoken`` ``B x C`` and ``x_norm_patchtokens`` ``B x N x C``."""
        p = self.patch_size
        if x.ndim != 5 or any(s % p for s in x.shape[-3:]):
            raise ValueError(
                f"backbone expects B x C x D x H x W input with edges multiple of {p}, "
                f"got {tuple(x.shape)}"
            )
        grid = tuple(s // p for s in x.shape[-3:])
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1).to(tokens.dtype), tokens), 1)
        tokens = tokens + self.interpolate_pos_encoding(grid, tokens.dtype)  # type: ignore[arg-type]
        tokens = self.norm(run_blocks(self._flat_blocks(), tokens, self.grad_checkpointing))
        return {"x_norm_clstoken": tokens[:, 0], "x_norm_patchtokens": tokens[:, 1:]}

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Final-normed patch tokens ``B x N x C`` (``N`` over the input's last three axes)."""
        return self.forward_features(x)["x_norm_patchtokens"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_tokens(x)


class DinoImageEncoder3D(nn.Module):
    """Volume ``B x in_chans x S^3`` -> embedding ``B x prompt_embed_dim x G^3`` (float)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.img_size = cfg.img_size
        dim, out = cfg.encoder_embed_dim, cfg.prompt_embed_dim
        self.backbone = DinoVisionTransformer3D(cfg)
        self.neck = nn.Sequential(nn.Conv3d(dim, out, kernel_size=1, bias=False), LayerNorm3d(out))

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in the backward pass (less memory, ~1/3 more compute)."""
        self.backbone.grad_checkpointing = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3:] != (self.img_size,) * 3:
            raise ValueError(
                f"image encoder expects B x C x {self.img_size}^3 input, got {tuple(x.shape)}"
            )
        tokens = self.backbone.patch_tokens(x)  # B x G^3 x C
        b, _, c = tokens.shape
        g = self.img_size // self.backbone.patch_size
        return self.neck(tokens.transpose(1, 2).reshape(b, c, g, g, g))

"""Small building blocks shared by the encoder, prompt encoder and decoder."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """Apply ``blocks`` in order; with ``checkpointing`` (and gradients on) each block's
    activations are recomputed in the backward pass instead of stored (activation checkpointing).
    """
    recompute = checkpointing and torch.is_grad_enabled()
    for blk in blocks:
        x = checkpoint(blk, x, use_reentrant=False) if recompute else blk(x)
    return x


def _channel_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    shape = (-1,) + (1,) * (x.ndim - 2)
    return weight.view(shape) * x + bias.view(shape)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``B x C x ...`` tensor (any number of spatial axes).

    ``fp32_statistics`` (class attribute): compute in float32 even under autocast and return
    the input's dtype (SAM's ``LayerNorm2d`` under bf16); otherwise the ops run as autocast
    leaves them (the 3-D models' ``LayerNorm3d``, as trained).
    """

    fp32_statistics: bool = False

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fp32_statistics:
            return _channel_norm(x, self.weight, self.bias, self.eps)
        with torch.autocast(x.device.type, enabled=False):
            y = _channel_norm(x.float(), self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


class LayerNorm3d(ChannelLayerNorm):
    """LayerNorm over the channel axis of a ``B x C x D x H x W`` tensor (eps 1e-6)."""


class MLPBlock(nn.Module):
    """Transformer feed-forward block: ``lin2(act(lin1(x)))`` on the last axis."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (hypernetworks and the IoU head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x

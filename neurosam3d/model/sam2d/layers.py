"""Channel-first LayerNorm of the 2-D models (SAM's ``LayerNorm2d``)."""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``B x C x H x W`` tensor (eps 1e-6), in fp32.

    Statistics are computed in float32 even under autocast; the result has the input's dtype.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = x.float()
            u = y.mean(1, keepdim=True)
            s = (y - u).pow(2).mean(1, keepdim=True)
            y = (y - u) / torch.sqrt(s + self.eps)
            y = self.weight.float()[:, None, None] * y + self.bias.float()[:, None, None]
        return y.to(x.dtype)

"""Channel-first LayerNorm of the 2-D models (SAM's ``LayerNorm2d``)."""

from __future__ import annotations

from neurosam3d.model.common import ChannelLayerNorm


class LayerNorm2d(ChannelLayerNorm):
    """LayerNorm over the channel axis of a ``B x C x H x W`` tensor (eps 1e-6), in fp32.

    Statistics are computed in float32 even under autocast; the result has the input's dtype.
    """

    fp32_statistics = True

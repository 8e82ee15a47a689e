"""2-D prompt encoder of SAM: points and boxes to sparse tokens, a mask to a dense map.

Call (SAM's signature)::

    sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)

* ``coords``: ``B x N x 2`` float pixel coordinates ``(x, y)`` in the ``S x S`` model input;
  ``labels``: ``B x N``, 1 positive, 0 negative, -1 padding (ignored point).
* ``boxes``: ``B x 4`` pixel corners ``(x0, y0, x1, y1)``.
* ``masks``: ``B x 1 x 4G x 4G`` low-resolution logits of a previous step.

Returns ``sparse``: ``B x T x E`` (``T = N + 1`` with a padding point when no box is given, plus
2 per box) and ``dense``: ``B x E x G x G``; with no prompt at all the batch size is 1 (as SAM).
The encoder is the 3-D model's rank-generic
:class:`~neurosam3d.model.prompt_encoder.TokenPromptEncoder` (SAM's ``[sin, cos]`` Fourier
features of the pixel centres, fp32 even under autocast; keys as SAM's) with 2-D layers.
"""

from __future__ import annotations

from torch import nn

from neurosam3d.model.prompt_encoder import TokenPromptEncoder
from neurosam3d.model.sam2d.config import Sam2DConfig
from neurosam3d.model.sam2d.layers import LayerNorm2d


class PromptEncoder(TokenPromptEncoder):
    """SAM's prompt encoder: ``Conv2d`` / ``LayerNorm2d`` mask downscaling, box embeddings."""

    rank = 2
    conv = nn.Conv2d
    norm = LayerNorm2d

    def __init__(self, cfg: Sam2DConfig) -> None:
        super().__init__(cfg, box_prompts=True)

    def _batch_without_prompts(self) -> int:
        return 1

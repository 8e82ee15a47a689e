"""A stand-in model whose "prediction" is its input thresholded: fed a mask as the image, it is
a perfect segmenter, so any loss of Dice comes from geometry, windows or stitching, not the model.

It runs through the real :class:`neurosam3d.model.Predictor` (it has the attributes the
predictor and the protocol read: ``config``, ``img_size``, ``low_res_size``, ``image_encoder``,
``predict_masks``, ``upscale_logits``) and records how it is called in the log that
:func:`install_oracle` installs: each encoded crop, and per decoded item (windows decoded in one
batch give one entry each) the index of its crop, its number of clicks and whether a mask
prompt was given. Its embedding is the crop plus a channel holding the crop's index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch

#: Logit magnitude of the oracle's decisions (sigmoid(30) rounds to 1 in float32).
_LOGIT = 30.0


@dataclass
class OracleLog:
    images: list[np.ndarray] = field(default_factory=list)
    #: (crop index, points, mask prompt given) per decoded item
    predictions: list[tuple[int, int, bool]] = field(default_factory=list)
    #: batch size of each decoding call
    batches: list[int] = field(default_factory=list)


_CURRENT = OracleLog()


def install_oracle(monkeypatch) -> OracleLog:
    """A fresh log that every :class:`OracleModel` records into during the test."""
    log = OracleLog()
    monkeypatch.setattr(f"{__name__}._CURRENT", log)
    return log


class OracleModel(torch.nn.Module):
    """Perfect on mask-valued images; low-resolution logits at full resolution (``L = S``)."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size
        self.low_res_size = img_size
        self.config = SimpleNamespace(in_chans=1, img_size=img_size)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.prompt_encoder = SimpleNamespace(supports_boxes=False)

    def image_encoder(self, volume: torch.Tensor) -> torch.Tensor:
        assert volume.shape == (1, 1, self.img_size, self.img_size, self.img_size)
        log = _CURRENT
        index = torch.full_like(volume, float(len(log.images)))
        log.images.append(volume[0, 0].cpu().numpy().copy())
        return torch.cat([volume, index], dim=1)

    def predict_masks(
        self, embedding, points, labels, mask_input=None, multimask=False, boxes=None
    ):
        assert points.shape[:2] == labels.shape and points.shape[2] == 3
        assert embedding.shape[0] == points.shape[0]
        log = _CURRENT
        log.batches.append(points.shape[0])
        for item in range(points.shape[0]):
            crop = int(embedding[item, 1, 0, 0, 0])
            log.predictions.append((crop, int(points.shape[1]), mask_input is not None))
        logits = torch.where(embedding[:, :1] > 0.5, _LOGIT, -_LOGIT)
        return logits, torch.ones(points.shape[0], 1)

    @staticmethod
    def upscale_logits(low_res: torch.Tensor, size) -> torch.Tensor:
        return low_res

"""A stand-in model whose "prediction" is its input thresholded: fed a mask as the image, it is
a perfect segmenter, so any loss of Dice comes from geometry, windows or stitching, not the model.
It also records how it is called (embeddings per window, clicks and mask prompts per prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch


class OracleModel(torch.nn.Module):
    """Has what the protocol reads from a model: ``img_size``, a parameter (device), prompt encoder."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.prompt_encoder = SimpleNamespace(supports_boxes=False)


@dataclass
class OracleLog:
    images: list[np.ndarray] = field(default_factory=list)
    predictions: list[tuple[int, int, bool]] = field(
        default_factory=list
    )  # (image, points, mask_in)


def install_oracle(monkeypatch) -> OracleLog:
    """Route ``neurosam3d.model.Predictor`` to the oracle; return its call log."""
    log = OracleLog()
    monkeypatch.setattr("neurosam3d.model.Predictor", _oracle_predictor(log), raising=False)
    return log


def _oracle_predictor(log: OracleLog) -> type:
    class OraclePredictor:
        def __init__(self, model: OracleModel, device: object = "cpu") -> None:
            self.size = model.img_size

        def set_image(self, volume: torch.Tensor) -> None:
            assert volume.shape == (1, 1, self.size, self.size, self.size)
            self.index = len(log.images)
            log.images.append(volume[0, 0].numpy())

        def predict(self, points, labels, mask_input=None, multimask=False, box=None):
            assert points.shape[:2] == labels.shape and points.shape[2] == 3
            log.predictions.append((self.index, points.shape[1], mask_input is not None))
            probs = (torch.from_numpy(log.images[self.index]) > 0.5).float()[None, None]
            low = torch.zeros(1, 1, self.size // 4, self.size // 4, self.size // 4)
            return SimpleNamespace(low_res_logits=low, probabilities=probs, iou=torch.ones(1, 1))

    return OraclePredictor

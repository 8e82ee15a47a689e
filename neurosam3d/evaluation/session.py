"""One window's interactive session: its crop's embedding (computed once), clicks and logits.

Shared by the evaluation protocol (simulated clicks) and ``neurosam3d predict`` (user clicks).
Points are working-grid voxel indices (``(3,)`` float); they are stored relative to the
window, i.e. as voxel indices of the model input along its last three axes.
"""

from __future__ import annotations

import numpy as np
import torch

from neurosam3d.evaluation.geometry import Box, GridMap, sample_box


class WindowSession:
    """Clicks and previous low-resolution logits of one window (``box``, model input size)."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.points: list[np.ndarray] = []
        self.labels: list[int] = []
        self.logits: torch.Tensor | None = None
        self.predictor = None

    @property
    def encoded(self) -> bool:
        """Whether the window's image embedding has been computed."""
        return self.predictor is not None

    def add_click(self, point: np.ndarray, label: int) -> None:
        """Record a click at working voxel ``point`` (inside the box) with label 1 or 0."""
        self.points.append(np.asarray(point, dtype=np.float64) - np.asarray(self.box.start))
        self.labels.append(int(label))

    def predict(
        self,
        model: torch.nn.Module,
        image: np.ndarray,
        grid: GridMap,
        background: float,
        box_prompt: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probabilities (``box.size`` float32 in [0, 1]) from all clicks so far and the last logits.

        ``image``: normalised original-grid volume; ``background``: its padding value;
        ``box_prompt``: optional ``(6,)`` inclusive working-voxel corners (models with box prompts).
        The crop is sampled and encoded on the first call only.
        """
        from neurosam3d.model import Predictor

        device = next(model.parameters()).device
        if self.predictor is None:
            volume = sample_box(image, grid, self.box, order=1, cval=background)
            self.predictor = Predictor(model, device=device)
            self.predictor.set_image(torch.from_numpy(volume)[None, None])
        points = torch.from_numpy(np.stack(self.points).astype(np.float32))[None].to(device)
        labels = torch.tensor([self.labels], dtype=torch.long, device=device)
        box = None
        if box_prompt is not None:
            start = np.tile(np.asarray(self.box.start, dtype=np.float32), 2)
            box = torch.from_numpy(np.asarray(box_prompt, dtype=np.float32) - start)[None].to(
                device
            )
        out = self.predictor.predict(
            points, labels, mask_input=self.logits, multimask=False, box=box
        )
        self.logits = out.low_res_logits
        return out.probabilities[0, 0].float().cpu().numpy()

"""One window's interactive session: its crop's embedding (computed once), clicks and logits.

Shared by the evaluation protocol (simulated clicks) and ``neurosam3d predict`` (user clicks),
through :mod:`.growth`. Points are working-grid voxel indices (``(3,)`` float); they are stored
relative to the window, i.e. as voxel indices of the model input along its last three axes.
:func:`predict_sessions` decodes several windows in one batch (each against its own embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from neurosam3d.transforms.geometry import Box, GridMap, sample_box
from neurosam3d.windows.tiling import PROBABILITY_DTYPE

#: Most windows decoded in one batch: a batch's upsampled probabilities and mask take about
#: 20 MB per 128^3 window, so larger batches cost memory for little CPU time.
DEFAULT_DECODE_BATCH = 2


class WindowSession:
    """Clicks and previous low-resolution logits of one window (``box``, model input size).

    ``seeded``: how many of the clicks were seeded from a neighbour's mask (not user clicks).
    """

    def __init__(self, box: Box) -> None:
        self.box = box
        self.points: list[np.ndarray] = []
        self.labels: list[int] = []
        self.logits: torch.Tensor | None = None
        self.embedding: torch.Tensor | None = None
        self.seeded = 0

    @property
    def encoded(self) -> bool:
        """Whether the window's image embedding has been computed."""
        return self.embedding is not None

    def add_click(self, point: np.ndarray, label: int, *, seeded: bool = False) -> None:
        """Record a click at working voxel ``point`` (inside the box) with label 1 or 0."""
        self.points.append(np.asarray(point, dtype=np.float64) - np.asarray(self.box.start))
        self.labels.append(int(label))
        self.seeded += int(seeded)

    def encode(
        self,
        model: torch.nn.Module,
        image: np.ndarray,
        grid: GridMap,
        background: float,
        amp_dtype: torch.dtype | None = None,
        crop_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Sample the crop from the normalised original-grid ``image`` and encode it (once);
        ``crop_transform``: per-window normalisation (per-crop intensity rules), or None."""
        if self.embedding is not None:
            return
        from neurosam3d.model import Predictor

        device = next(model.parameters()).device
        volume = sample_box(image, grid, self.box, order=1, cval=background)
        if crop_transform is not None:
            volume = crop_transform(volume)
        predictor = Predictor(model, device=device, amp_dtype=amp_dtype)
        predictor.set_image(torch.from_numpy(volume)[None, None])
        self.embedding = predictor.embedding

    def predict(
        self,
        model: torch.nn.Module,
        image: np.ndarray,
        grid: GridMap,
        background: float,
        box_prompt: np.ndarray | None = None,
        amp_dtype: torch.dtype | None = None,
    ) -> np.ndarray:
        """Probabilities (``box.size`` float16 in [0, 1]) from all clicks so far and the last logits.

        ``image``: normalised original-grid volume; ``background``: its padding value;
        ``box_prompt``: optional ``(6,)`` inclusive working-voxel corners (models with box prompts).
        The crop is sampled and encoded on the first call only.
        """
        return predict_sessions(
            [self], model, image, grid, background, box_prompt=box_prompt, amp_dtype=amp_dtype
        )[0]


def predict_sessions(
    sessions: Sequence[WindowSession],
    model: torch.nn.Module,
    image: np.ndarray,
    grid: GridMap,
    background: float,
    *,
    box_prompt: np.ndarray | None = None,
    amp_dtype: torch.dtype | None = None,
    max_batch: int = DEFAULT_DECODE_BATCH,
    crop_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Predict every session from all its clicks and its last logits; probabilities per session.

    Probabilities are ``box.size`` arrays of :data:`~.tiling.PROBABILITY_DTYPE` (float16):
    what the :class:`~.tiling.Stitcher` keeps.

    Windows are encoded on first use, one at a time (an encoder batch of 128^3 crops costs
    memory, not time); decoding is batched over the sessions that have the same number of clicks
    and the same kind of mask prompt (first prediction or logits fed back), so a batched result
    equals the one-window result up to float rounding (no padding clicks are added), in
    batches of at most ``max_batch`` windows.
    """
    from neurosam3d.model import Predictor

    device = next(model.parameters()).device
    for session in sessions:
        session.encode(model, image, grid, background, amp_dtype, crop_transform)
    groups: dict[tuple[int, bool], list[int]] = {}
    for index, session in enumerate(sessions):
        groups.setdefault((len(session.points), session.logits is None), []).append(index)
    out: list[np.ndarray | None] = [None] * len(sessions)
    batches = [
        (first, members[start : start + max_batch])
        for (_, first), members in sorted(groups.items())
        for start in range(0, len(members), max_batch)
    ]
    for first, members in batches:
        group = [sessions[i] for i in members]
        predictor = Predictor(model, device=device, amp_dtype=amp_dtype)
        predictor.set_embedding(torch.cat([s.embedding for s in group]))  # type: ignore[misc]
        points = torch.from_numpy(
            np.stack([np.stack(s.points) for s in group]).astype(np.float32)
        ).to(device)
        labels = torch.tensor([s.labels for s in group], dtype=torch.long, device=device)
        mask_input = None if first else torch.cat([s.logits for s in group])  # type: ignore[misc]
        box = None
        if box_prompt is not None:
            corners = np.asarray(box_prompt, dtype=np.float32)
            box = torch.from_numpy(
                np.stack([corners - np.tile(np.asarray(s.box.start, np.float32), 2) for s in group])
            ).to(device)
        result = predictor.predict(points, labels, mask_input=mask_input, multimask=False, box=box)
        probabilities = result.probabilities[:, 0].float().cpu().numpy()
        for row, (index, session) in enumerate(zip(members, group, strict=True)):
            session.logits = result.low_res_logits[row : row + 1]
            out[index] = probabilities[row].astype(PROBABILITY_DTYPE)
    return out  # type: ignore[return-value]

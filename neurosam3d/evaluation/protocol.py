"""The interactive evaluation protocol for one (case, class) target.

For a target (an image and its binary reference mask on the original grid):

1. the working grid (optional reorientation and resampling, :mod:`.geometry`) is planned, and
   windows of the model's input size are laid over the reference's bounding box (one window
   centred on it, as SAM-Med3D crops, or a tiling for larger targets, :mod:`.windows`);
2. ``clicks`` clicks are simulated with a named, seeded rule from :mod:`neurosam3d.prompts` on
   the region the windows cover, each against the current stitched prediction;
3. each click goes to the windows that contain it; a window that received a click is predicted
   again from **all** its clicks so far and its previous low-resolution logits; its image
   embedding is computed once, when its first click arrives;
4. after every click the stitched probabilities are mapped back onto the original grid
   (:func:`~neurosam3d.evaluation.geometry.box_to_original`), thresholded at 0.5, and scored there
   (Dice, NSD, voxel counts, :mod:`.metrics`). The target's score is that of its **final**
   click, never its best.

Randomness: one ``torch.Generator`` per target, seeded from the protocol seed and the target's
identity (:func:`target_seed`), so a target's clicks do not depend on which other targets run.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from neurosam3d.evaluation.geometry import GridMap, box_to_original, sample_box
from neurosam3d.evaluation.metrics import DEFAULT_NSD_TOLERANCE_MM, MaskScores, ReferenceScorer
from neurosam3d.evaluation.session import WindowSession
from neurosam3d.evaluation.windows import DEFAULT_OVERLAP, Stitcher, plan_windows, union_box
from neurosam3d.prompts import NOT_A_POINT, get_click_rule

logger = logging.getLogger(__name__)

DEFAULT_CLICKS = 10
DEFAULT_CLICK_RULE = "random_error"


@dataclass(frozen=True)
class ProtocolConfig:
    """Parameters of the protocol (everything that changes a score is here).

    ``orientation``/``spacing_mm``: working grid (``None`` keeps the stored axes / spacing; the
    released SAM-Med3D checkpoints expect ``"RAS"`` and 1.5 mm); ``overlap``: window overlap
    fraction; ``threshold``: probability above which a voxel is predicted foreground.
    """

    clicks: int = DEFAULT_CLICKS
    click_rule: str = DEFAULT_CLICK_RULE
    seed: int = 0
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    orientation: str | None = None
    spacing_mm: float | None = None
    overlap: float = DEFAULT_OVERLAP
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.clicks < 1:
            raise ValueError(f"clicks must be at least 1, got {self.clicks}")
        get_click_rule(self.click_rule)  # KeyError naming the known rules


def target_seed(seed: int, *key: str) -> int:
    """Seed of one target's generator: stable across runs, platforms and target order."""
    return zlib.crc32("\x00".join((str(seed), *key)).encode()) ^ (seed & 0xFFFFFFFF)


@dataclass(frozen=True)
class ClickScore:
    """Scores on the original grid after click ``click`` (1-based) with ``windows`` windows in use."""

    click: int
    scores: MaskScores
    windows: int


@dataclass
class TargetResult:
    """Per-click scores of one target and its final prediction (original grid, bool)."""

    clicks: list[ClickScore]
    prediction: np.ndarray
    probabilities: np.ndarray = field(repr=False)

    @property
    def final(self) -> ClickScore:
        """The score the target is ranked by: its last click."""
        return self.clicks[-1]


def run_target(
    model: torch.nn.Module,
    image: np.ndarray,
    reference: np.ndarray,
    grid: GridMap,
    config: ProtocolConfig,
    generator: torch.Generator,
) -> TargetResult:
    """Run the click loop on one target and score every click on the original grid.

    ``image``: normalised float32 volume on the original grid (I x J x K); ``reference``: bool
    mask on the same grid, not empty; ``grid``: the working grid of that image (:func:`plan_grid`).
    """
    size = int(model.img_size)
    background = float(image.min())
    lo, hi = _working_bbox(reference, grid)
    windows = [WindowSession(box) for box in plan_windows(lo, hi, size, overlap=config.overlap)]
    region = union_box((w.box for w in windows), grid.shape)
    target = torch.from_numpy(sample_box(reference, grid, region, order=1) >= 0.5)[None]
    stitcher = Stitcher(region)
    scorer = ReferenceScorer(reference, grid.original_spacing, config.nsd_tolerance_mm)
    rule = get_click_rule(config.click_rule)
    probs_region: np.ndarray | None = None
    scored: list[ClickScore] = []
    for click in range(1, config.clicks + 1):
        # The rule gets the thresholded mask: the same click as from the probabilities.
        current = (
            None
            if probs_region is None
            else torch.from_numpy(probs_region > config.threshold)[None]
        )
        step = rule(target, current, generator=generator)
        point = step.coords[0, 0].numpy().astype(np.float64) + np.asarray(region.start)
        label = int(step.labels[0, 0])
        if label != NOT_A_POINT:
            for window in windows:
                if window.box.contains(point):
                    window.add_click(point, label)
                    stitcher.set(window.box, window.predict(model, image, grid, background))
        probs_region = stitcher.probabilities()
        probs = box_to_original(probs_region, grid, region)
        prediction = probs > config.threshold
        scores = scorer.score(prediction)
        active = sum(1 for w in windows if w.encoded)
        logger.debug(
            "click %d (label %d): Dice %.4f, %d window(s) encoded",
            click,
            label,
            scores.dice,
            active,
        )
        scored.append(ClickScore(click, scores, active))
    return TargetResult(scored, prediction, probs)


def _working_bbox(reference: np.ndarray, grid: GridMap) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box ``[lo, hi)`` of ``reference``'s voxels in working voxel indices."""
    idx = np.argwhere(reference)
    if len(idx) == 0:
        raise ValueError("the reference mask is empty: the protocol only scores present targets")
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.array(
        [[(lo, hi)[b][a] for a, b in enumerate(bits)] for bits in np.ndindex(2, 2, 2)], float
    )
    working = grid.to_working(corners)
    return np.floor(working.min(axis=0)), np.floor(working.max(axis=0)) + 1

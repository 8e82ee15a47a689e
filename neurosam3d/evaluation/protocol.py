"""The interactive protocols, per (case, class) target, and their parameters.

Three protocols, named in every result row (``protocol`` column):

``full`` (default, :func:`run_full`), for an image and its binary reference mask on the
original grid:

1. the working grid (optional reorientation and resampling, :mod:`neurosam3d.transforms.geometry`) is planned, and
   windows of the model's input size are laid over the reference's bounding box (one window
   centred on it, as SAM-Med3D crops, or a tiling for larger targets,
   :mod:`neurosam3d.windows.tiling`);
2. ``clicks`` clicks are simulated with a named, seeded rule from :mod:`neurosam3d.prompts` on
   the region the windows cover, each against the current stitched prediction;
3. each click goes to the windows that contain it; those are predicted again from **all** their
   clicks so far and their previous low-resolution logits (one batch); then the prediction is
   made whole by the mechanism of ``neurosam3d predict``
   (:class:`~neurosam3d.windows.growth.GrowingWindows`):
   every laid window the stitched mask overlaps, and every window beyond a face a window's mask
   reaches, is added and seeded with a positive click at the mask's deepest voxel inside it
   (``seeded_clicks``, not counted as clicks). A window's embedding is computed once;
4. after every click the stitched probabilities are mapped back onto the original grid **inside
   the footprint of the windows only** (:func:`~neurosam3d.transforms.geometry.box_to_footprint`), thresholded at 0.5,
   and scored there against the reference (Dice, NSD, voxel counts,
   :meth:`~.metrics.ReferenceScorer.score_box`; what lies outside is computed once). The
   target's score is that of its **final** click, never its best.

Memory per click is bounded by the region, not the volume: probabilities are float16 (window,
stitched, footprint), the reference and prediction on the click region bool, and only one
stitched array and one region mask are alive at a time; nothing volume-sized is allocated.

``sam-med3d`` (:func:`neurosam3d.evaluation.sammed3d.run_sam_med3d`): upstream SAM-Med3D's
validation, step by step (see that module).

``slice2d`` (:func:`neurosam3d.evaluation.slice2d.run_slice2d`): a 2-D model (SAM, SAM-Med2D)
slice by slice on the axial slices that contain the target (see that module).

Randomness: one ``torch.Generator`` per target, seeded from the protocol seed and the target's
identity (:func:`target_seed`), so a target's clicks do not depend on which other targets run.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from neurosam3d.evaluation.metrics import DEFAULT_NSD_TOLERANCE_MM, MaskScores, ReferenceScorer
from neurosam3d.prompts import NOT_A_POINT, get_click_rule
from neurosam3d.transforms.geometry import Box, GridMap, box_to_footprint, sample_mask
from neurosam3d.windows.growth import DEFAULT_MAX_WINDOWS, GrowingWindows
from neurosam3d.windows.tiling import (
    DEFAULT_OVERLAP,
    PROBABILITY_DTYPE,
    overlap_slices,
    plan_windows,
    union_box,
)

logger = logging.getLogger(__name__)

DEFAULT_CLICKS = 10
DEFAULT_CLICK_RULE = "random_error"
FULL, SAM_MED3D, SLICE2D = "full", "sam-med3d", "slice2d"
PROTOCOLS = (FULL, SAM_MED3D, SLICE2D)
#: NSD tolerance (mm) of each protocol when none is given.
DEFAULT_TOLERANCES_MM = {FULL: DEFAULT_NSD_TOLERANCE_MM, SAM_MED3D: 1.0, SLICE2D: 2.0}
#: Protocols that fix their own working grid (no orientation/spacing_mm).
_OWN_GRID = {SAM_MED3D: "canonical RAS, 1.5 mm", SLICE2D: "canonical RAS, native spacing"}


@dataclass(frozen=True)
class ProtocolConfig:
    """Parameters of the protocol (everything that changes a score is here).

    ``protocol``: ``"full"``, ``"sam-med3d"`` or ``"slice2d"``; ``nsd_tolerance_mm``: ``None``
    takes the protocol's default (2 mm for ``full`` and ``slice2d``, 1 mm for ``sam-med3d``);
    ``orientation``/``spacing_mm``: the working-grid options given to ``full`` (``None``: the
    model's preprocessing record decides; ``"native"``: the stored axes / native grid; the grid
    itself is planned from the record with these applied,
    :class:`~neurosam3d.transforms.Preprocessing`; ``sam-med3d`` fixes RAS and 1.5 mm itself,
    ``slice2d`` RAS at the native spacing); ``overlap``: window overlap fraction;
    ``max_windows``: most windows a target grows into (``full``); ``threshold``: probability
    above which a voxel is foreground.
    """

    clicks: int = DEFAULT_CLICKS
    click_rule: str = DEFAULT_CLICK_RULE
    seed: int = 0
    nsd_tolerance_mm: float | None = None
    orientation: str | None = None
    spacing_mm: float | list[float] | str | None = None
    overlap: float = DEFAULT_OVERLAP
    threshold: float = 0.5
    protocol: str = FULL
    max_windows: int = DEFAULT_MAX_WINDOWS

    def __post_init__(self) -> None:
        if self.clicks < 1:
            raise ValueError(f"clicks must be at least 1, got {self.clicks}")
        get_click_rule(self.click_rule)  # KeyError naming the known rules
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose from {PROTOCOLS}")
        if self.protocol in _OWN_GRID and (
            self.orientation is not None or self.spacing_mm is not None
        ):
            raise ValueError(
                f"the {self.protocol} protocol fixes its own grid ({_OWN_GRID[self.protocol]}): "
                "do not give orientation/spacing_mm with it"
            )
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {self.max_windows}")
        if self.nsd_tolerance_mm is None:
            object.__setattr__(self, "nsd_tolerance_mm", DEFAULT_TOLERANCES_MM[self.protocol])


def target_seed(seed: int, *key: str) -> int:
    """Seed of one target's generator: stable across runs, platforms and target order."""
    return zlib.crc32("\x00".join((str(seed), *key)).encode()) ^ (seed & 0xFFFFFFFF)


@dataclass(frozen=True)
class ClickScore:
    """Scores on the original grid after click ``click`` (1-based).

    ``windows``: windows holding a prediction or overlapping the stitched mask;
    ``windows_predicted``: those that hold a prediction (equal unless ``max_windows`` stopped
    the growth); ``seeded_clicks``: seeded (not simulated) clicks in use so far.
    """

    click: int
    scores: MaskScores
    windows: int
    windows_predicted: int = 1
    seeded_clicks: int = 0


@dataclass
class TargetResult:
    """Per-click scores of one target and its final prediction on a block of the original grid.

    ``footprint``: original-grid slices the prediction may be non-zero in; ``probabilities``:
    float16 on that block (0 outside it); ``prediction`` is ``probabilities > threshold``.
    """

    clicks: list[ClickScore]
    footprint: tuple[slice, ...]
    probabilities: np.ndarray = field(repr=False)
    threshold: float = 0.5

    @property
    def final(self) -> ClickScore:
        """The score the target is ranked by: its last click."""
        return self.clicks[-1]

    @property
    def prediction(self) -> np.ndarray:
        """Final prediction on the footprint (bool)."""
        return self.probabilities > self.threshold

    def full_prediction(self, shape: tuple[int, ...]) -> np.ndarray:
        """Final prediction on the whole original grid of ``shape`` (bool)."""
        out = np.zeros(shape, dtype=bool)
        out[self.footprint] = self.prediction
        return out


def run_target(
    model: torch.nn.Module,
    image: np.ndarray,
    reference: np.ndarray,
    grid: GridMap,
    config: ProtocolConfig,
    generator: torch.Generator,
    amp_dtype: torch.dtype | None = None,
) -> TargetResult:
    """The ``full`` protocol on one target (kept under this name for callers of one protocol)."""
    return run_full(model, image, reference, grid, config, generator, amp_dtype=amp_dtype)


def run_full(
    model: torch.nn.Module,
    image: np.ndarray,
    reference: np.ndarray,
    grid: GridMap,
    config: ProtocolConfig,
    generator: torch.Generator,
    *,
    amp_dtype: torch.dtype | None = None,
    background: float | None = None,
    crop_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> TargetResult:
    """Run the ``full`` click loop on one target and score every click on the original grid.

    ``image``: normalised volume on the original grid (I x J x K; a float32 array or a
    :class:`~neurosam3d.transforms.volume.NormalisedVolume`, read per crop); ``reference``: bool
    mask on the same grid, not empty; ``grid``: the working grid of that image (:func:`plan_grid`);
    ``background``: padding value of crops (default ``image.min()``; pass it to save a pass over
    the volume per target); ``crop_transform``: per-window normalisation of per-crop intensity
    rules (:class:`~neurosam3d.transforms.PreparedImage`), or None.
    """
    size = int(model.img_size)
    background = float(image.min()) if background is None else background
    lo, hi = _working_bbox(reference, grid)
    windows = GrowingWindows(
        model,
        image,
        grid,
        background=background,
        overlap=config.overlap,
        threshold=config.threshold,
        max_windows=config.max_windows,
        amp_dtype=amp_dtype,
        crop_transform=crop_transform,
    )
    windows.lay(plan_windows(lo, hi, size, overlap=config.overlap))
    scorer = ReferenceScorer(reference, grid.original_spacing, config.nsd_tolerance_mm)
    rule = get_click_rule(config.click_rule)
    # The click region (the windows' union) and the reference and prediction on it: bool
    # arrays, recomputed only when the windows grow.
    region = union_box(windows.laid, grid.shape)
    target = torch.from_numpy(sample_mask(reference, grid, region))[None]
    current: torch.Tensor | None = None
    scored: list[ClickScore] = []
    footprint: tuple[slice, ...] = tuple(slice(0, 0) for _ in range(3))
    probs = np.zeros((0, 0, 0), PROBABILITY_DTYPE)
    for click in range(1, config.clicks + 1):
        step = rule(target, current, generator=generator)
        current = None  # recomputed below: only one prediction-sized mask at a time
        point = step.coords[0, 0].numpy().astype(np.float64) + np.asarray(region.start)
        label = int(step.labels[0, 0])
        if label != NOT_A_POINT:
            windows.predict(windows.click(point, label))
        windows.propagate()
        more = click < config.clicks
        mask = None
        if windows.region is not None:  # else no window predicted yet ("not a point" click)
            stitched = windows.probabilities()
            footprint, probs = box_to_footprint(
                stitched, grid, windows.region, dtype=PROBABILITY_DTYPE
            )
            mask = stitched > config.threshold if more else None
            del stitched  # the float arrays of one click: the stitched, then the footprint's
        scores = scorer.score_box(probs > config.threshold, footprint)
        if more:  # the next click's region, and the reference and prediction on it
            grown = union_box([*windows.laid, *windows.predicted], grid.shape)
            if grown != region:
                region = grown
                target = torch.from_numpy(sample_mask(reference, grid, region))[None]
            if mask is not None:
                current = _on_region(mask, windows.region, region)  # type: ignore[arg-type]
            del mask
        predicted = len(windows.predicted)
        logger.debug(
            "click %d (label %d): Dice %.4f, %d window(s) predicted, %d seeded click(s)",
            click,
            label,
            scores.dice,
            predicted,
            windows.seeded_clicks,
        )
        scored.append(
            ClickScore(click, scores, predicted + windows.pending, predicted, windows.seeded_clicks)
        )
    return TargetResult(scored, footprint, probs, config.threshold)


def _on_region(mask: np.ndarray, box: Box, region: Box) -> torch.Tensor:
    """``mask`` (on working ``box``) placed on ``region`` (0 elsewhere), as a 1 x region tensor."""
    out = np.zeros(region.size, dtype=bool)
    dst, src = overlap_slices(box, region)
    if dst is not None:
        out[dst] = mask[src]
    return torch.from_numpy(out)[None]


def _working_bbox(reference: np.ndarray, grid: GridMap) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box ``[lo, hi)`` of ``reference``'s voxels in working voxel indices."""
    nonzero = [
        np.flatnonzero(reference.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    if any(len(n) == 0 for n in nonzero):
        raise ValueError("the reference mask is empty: the protocol only scores present targets")
    lo = np.array([n[0] for n in nonzero])
    hi = np.array([n[-1] for n in nonzero])
    corners = np.array(
        [[(lo, hi)[b][a] for a, b in enumerate(bits)] for bits in np.ndindex(2, 2, 2)], float
    )
    working = grid.to_working(corners)
    return np.floor(working.min(axis=0)), np.floor(working.max(axis=0)) + 1

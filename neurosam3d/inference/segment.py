"""Segment one structure of a volume from user clicks (no reference needed).

1. The working grid is planned (:mod:`neurosam3d.evaluation.geometry`) and windows of the model's
   input size are laid over the clicks (and the optional box); every window gets the clicks that
   fall inside it, fed one at a time with the previous low-resolution logits, as in training.
2. Wherever the stitched mask reaches a window face beyond which the image continues, the
   window on the other side is added (:func:`~neurosam3d.evaluation.windows.border_neighbours`);
   a new window without user clicks gets one positive click at the deepest voxel of the current
   mask inside it. This repeats until no mask touches an open face or ``max_windows`` is reached.
3. The stitched probabilities are mapped back onto the original grid and thresholded. With a
   box, nothing outside the box is predicted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from neurosam3d.evaluation.geometry import Box, GridMap, box_to_original, grid_for_image
from neurosam3d.evaluation.session import WindowSession
from neurosam3d.evaluation.windows import (
    DEFAULT_OVERLAP,
    Stitcher,
    border_neighbours,
    plan_windows,
    union_box,
)
from neurosam3d.training.intensity import normalise_intensity

logger = logging.getLogger(__name__)

DEFAULT_MAX_WINDOWS = 27
#: Below this minimum intensity a volume is taken for CT (Hounsfield units) by ``modality="auto"``.
_CT_MINIMUM = -500.0


@dataclass(frozen=True)
class Segmentation:
    """``mask``: bool and ``probabilities``: float32, both on the original grid; ``windows`` used."""

    mask: np.ndarray
    probabilities: np.ndarray
    windows: int


def guess_modality(volume: np.ndarray) -> str:
    """``"CT"`` when the volume holds Hounsfield-like values below -500, else ``"MR"``."""
    return "CT" if float(np.min(volume)) < _CT_MINIMUM else "MR"


def _run_window(
    window: Box,
    clicks: list[tuple[np.ndarray, int]],
    model: torch.nn.Module,
    image: np.ndarray,
    grid: GridMap,
    box_prompt: np.ndarray | None,
) -> np.ndarray:
    """Feed ``clicks`` (working voxel, label) one at a time with the previous logits; final probabilities."""
    session = WindowSession(window)
    background = float(image.min())
    for point, label in clicks:
        session.add_click(point, label)
        probs = session.predict(model, image, grid, background, box_prompt)
    return probs


def segment(
    model: torch.nn.Module,
    image: nib.Nifti1Image,
    points: np.ndarray,
    labels: np.ndarray,
    *,
    box: np.ndarray | None = None,
    modality: str = "auto",
    orientation: str | None = None,
    spacing_mm: float | None = None,
    overlap: float = DEFAULT_OVERLAP,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    threshold: float = 0.5,
) -> Segmentation:
    """Segment the structure marked by ``points`` in ``image``.

    ``points``: ``N x 3`` original voxel indices (float); ``labels``: ``N`` ints, 1 foreground,
    0 background (at least one 1); ``box``: optional ``2 x 3`` inclusive original voxel corners.
    ``modality`` (``"CT"``, ``"MR"`` or ``"auto"``) picks the intensity normalisation.
    """
    volume = np.asarray(image.dataobj)
    if modality == "auto":
        modality = guess_modality(volume)
    normalised = normalise_intensity(volume, modality)
    grid = grid_for_image(image, orientation, spacing_mm)
    size = int(model.img_size)
    working = grid.to_working(np.asarray(points, dtype=np.float64))
    box_working = None
    extent = working
    if box is not None:
        corners = grid.to_working(np.asarray(box, dtype=np.float64))
        box_working = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
        extent = np.concatenate([working, corners])
    lo, hi = np.floor(extent.min(axis=0) + 0.5), np.floor(extent.max(axis=0) + 0.5) + 1
    prompt = (
        box_working if box_working is not None and model.prompt_encoder.supports_boxes else None
    )
    tried: set[Box] = set()
    pending = plan_windows(lo, hi, size, overlap=overlap)
    stitched = Stitcher(union_box(pending, grid.shape))
    with torch.inference_mode():
        while pending and len(stitched.windows) < max_windows:
            boxes = pending[: max_windows - len(stitched.windows)]
            tried.update(boxes)
            stitched = _resize(stitched, union_box([*stitched.windows, *boxes], grid.shape))
            current = stitched.probabilities() > threshold
            for window in boxes:
                clicks = [
                    (p, int(c)) for p, c in zip(working, labels, strict=True) if window.contains(p)
                ]
                if not any(c == 1 for _, c in clicks):
                    seed = _deepest_voxel(current, stitched.region, window)
                    if seed is None:
                        continue
                    clicks.append((seed, 1))
                stitched.set(window, _run_window(window, clicks, model, normalised, grid, prompt))
            pending = [b for b in _neighbours(stitched, grid, overlap, threshold) if b not in tried]
    if pending:
        logger.warning(
            "the mask still reaches a window border after %d windows (max_windows)",
            len(stitched.windows),
        )
    probs = box_to_original(stitched.probabilities(), grid, stitched.region)
    if box is not None:
        probs = _clip_to_box(probs, box)
    return Segmentation(probs > threshold, probs, len(stitched.windows))


def _resize(stitched: Stitcher, region: Box) -> Stitcher:
    """The same window predictions on a (larger) region."""
    if stitched.region == region:
        return stitched
    grown = Stitcher(region)
    for window, probs in stitched.windows.items():
        grown.set(window, probs)
    return grown


def _deepest_voxel(mask: np.ndarray, region: Box, window: Box) -> np.ndarray | None:
    """Working voxel of ``mask`` (on ``region``) inside ``window`` farthest from its boundary, or None."""
    lo = [max(window.start[a], region.start[a]) - region.start[a] for a in range(3)]
    hi = [min(window.stop[a], region.stop[a]) - region.start[a] for a in range(3)]
    part = mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    if not part.any():
        return None
    depth = ndimage.distance_transform_edt(np.pad(part, 1))[1:-1, 1:-1, 1:-1]
    index = np.unravel_index(int(np.argmax(depth)), part.shape)
    return np.asarray(index, dtype=np.float64) + np.asarray(lo) + np.asarray(region.start)


def _neighbours(stitcher: Stitcher, grid: GridMap, overlap: float, threshold: float) -> list[Box]:
    """Windows beyond the faces that a window's mask reaches, sorted by start."""
    found: set[Box] = set()
    for window, probs in stitcher.windows.items():
        found.update(border_neighbours(probs > threshold, window, grid.shape, overlap))
    return sorted(found - set(stitcher.windows), key=lambda b: b.start)


def _clip_to_box(probs: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Zero ``probs`` outside the inclusive voxel box (``2 x 3`` original indices)."""
    lo = np.clip(np.floor(box[0] + 0.5).astype(int), 0, probs.shape)
    hi = np.clip(np.floor(box[1] + 0.5).astype(int) + 1, 0, probs.shape)
    clipped = np.zeros_like(probs)
    inside = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    clipped[inside] = probs[inside]
    return clipped

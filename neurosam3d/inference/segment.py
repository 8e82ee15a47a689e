"""Segment one structure of a volume from user clicks (no reference needed).

1. The image is prepared by the model's :class:`~neurosam3d.transforms.Preprocessing` record
   (working grid, intensity rule: :meth:`Preprocessing.prepare`, what training, evaluation and
   the registered model use) and windows of the model's input size are laid over the clicks (and the optional box); every window gets the clicks that
   fall inside it, fed one at a time with the previous low-resolution logits, as in training.
2. The prediction is then made whole by :class:`~neurosam3d.windows.growth.GrowingWindows`
   (the mechanism the evaluation's ``full`` protocol uses): every laid window the stitched mask
   overlaps, and the window beyond every face a window's mask reaches where the image
   continues, is added and seeded with one positive click at the deepest voxel of the mask
   inside it, until no such window is left or ``max_windows`` windows are in use.
3. The stitched probabilities are mapped back onto the original grid and thresholded. With a
   box, nothing outside the box is predicted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from neurosam3d.transforms import Preprocessing
from neurosam3d.transforms.geometry import box_to_original
from neurosam3d.windows.growth import DEFAULT_MAX_WINDOWS, GrowingWindows
from neurosam3d.windows.tiling import DEFAULT_OVERLAP, plan_windows

logger = logging.getLogger(__name__)

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


def segment(
    model: torch.nn.Module,
    image: nib.Nifti1Image,
    points: np.ndarray,
    labels: np.ndarray,
    *,
    box: np.ndarray | None = None,
    modality: str = "auto",
    preprocessing: Preprocessing | None = None,
    overlap: float = DEFAULT_OVERLAP,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    threshold: float = 0.5,
    amp_dtype: torch.dtype | None = None,
) -> Segmentation:
    """Segment the structure marked by ``points`` in ``image``.

    ``points``: ``N x 3`` original voxel indices (float); ``labels``: ``N`` ints, 1 foreground,
    0 background (at least one 1); ``box``: optional ``2 x 3`` inclusive original voxel corners.
    ``modality`` (``"CT"``, ``"MR"`` or ``"auto"``) picks the CT window or not;
    ``preprocessing``: the model's record (default :meth:`Preprocessing.native`: stored axes,
    native grid, CT window + z-score); ``amp_dtype``: autocast dtype (e.g. ``torch.bfloat16``
    on a GPU).
    """
    volume = np.asarray(image.dataobj)
    if modality == "auto":
        modality = guess_modality(volume)
    size = int(model.img_size)
    preprocessing = preprocessing or Preprocessing.native(size)
    prepared = preprocessing.prepare(volume, modality, image.affine)
    grid = prepared.grid
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
    windows = GrowingWindows(
        model,
        prepared.volume,
        grid,
        background=prepared.background,
        crop_transform=prepared.crop_transform,
        overlap=overlap,
        threshold=threshold,
        max_windows=max_windows,
        box_prompt=prompt,
        amp_dtype=amp_dtype,
    )
    windows.lay(plan_windows(lo, hi, size, overlap=overlap))
    with torch.inference_mode():
        for point, label in zip(working, labels, strict=True):
            windows.predict(windows.click(point, int(label)))
        windows.propagate()
    probs = box_to_original(windows.probabilities(), grid, windows.region)  # type: ignore[arg-type]
    if box is not None:
        probs = _clip_to_box(probs, box)
    return Segmentation(probs > threshold, probs, len(windows.predicted))


def _clip_to_box(probs: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Zero ``probs`` outside the inclusive voxel box (``2 x 3`` original indices)."""
    lo = np.clip(np.floor(box[0] + 0.5).astype(int), 0, probs.shape)
    hi = np.clip(np.floor(box[1] + 0.5).astype(int) + 1, 0, probs.shape)
    clipped = np.zeros_like(probs)
    inside = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    clipped[inside] = probs[inside]
    return clipped

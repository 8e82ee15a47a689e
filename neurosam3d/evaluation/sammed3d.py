"""The ``sam-med3d`` protocol: upstream SAM-Med3D's validation, step by step.

So that published SAM-Med3D numbers (and the release checkpoints SAM-Med3D, -turbo) can be
compared with ours, per target:

1. image and mask are resampled to 1.5 mm isotropic (torchio ``Resample(1.5)``: linear for the
   image, nearest for the mask, both onto the same grid; the image once per case) and reoriented
   to canonical RAS (torchio ``ToCanonical``): the **working grid** (:class:`WorkingImage`);
2. one crop of the model's input size (128^3 for the released architecture) centred on the
   mask's bounding box, cropping or padding with 0 exactly as torchio ``CropOrPad(mask_name=...)``
   does (:func:`crop_start`); targets larger than the crop are truncated, as upstream does;
3. the crop is z-normalised on its voxels > 0 (torchio ``ZNormalization(masking_method=x > 0)``;
   no CT window);
4. the crop is encoded once; the low-resolution mask starts at zero (``1 x 1 x (S/4)^3``); each
   click is drawn uniformly from the error region of the crop's mask against the current
   prediction (false negatives give positive, false positives negative clicks; the first click
   is uniform over the crop's mask) and decoded with **all** clicks so far and the previous
   low-resolution logits; the logits are upsampled trilinearly to the crop and thresholded at
   sigmoid > 0.5;
5. after every click the crop is pasted back into the working grid and resampled onto the
   original grid with nearest neighbour (:class:`PasteBack`, only inside the crop's footprint),
   and scored there: Dice and NSD (default tolerance 1 mm).

Ties of the nearest-neighbour paste-back (an original voxel centre exactly half-way between two
working voxel centres) go to the higher index (``floor(x + 0.5)``, as ITK rounds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from neurosam3d.evaluation.metrics import ReferenceScorer
from neurosam3d.evaluation.protocol import ClickScore, ProtocolConfig, TargetResult
from neurosam3d.prompts import NOT_A_POINT, get_click_rule

logger = logging.getLogger(__name__)

#: Working spacing of the protocol (mm, isotropic).
SPACING_MM = 1.5
#: Working orientation of the protocol.
ORIENTATION = "RAS"


@dataclass(frozen=True)
class WorkingImage:
    """An image on the protocol's working grid: ``data`` float32 (canonical RAS, 1.5 mm).

    ``affine``: working voxel -> world mm; ``original_affine``/``original_shape``: the image as
    stored.
    """

    data: np.ndarray
    affine: np.ndarray
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]


def _to_working(data: np.ndarray, affine: np.ndarray, label: bool) -> tuple[np.ndarray, np.ndarray]:
    """torchio ``Resample(1.5)`` then ``ToCanonical`` of one 3-D array; (array, affine)."""
    import torchio as tio

    tensor = torch.from_numpy(np.ascontiguousarray(data))[None]
    image = (
        tio.LabelMap(tensor=tensor, affine=affine)
        if label
        else tio.ScalarImage(tensor=tensor, affine=affine)
    )
    out = tio.ToCanonical()(tio.Resample(SPACING_MM)(image))
    return out.data[0].numpy(), np.asarray(out.affine, dtype=np.float64)


def working_image(image: nib.Nifti1Image) -> WorkingImage:
    """Step 1 for the image: resampled linearly to 1.5 mm and reoriented to canonical RAS."""
    volume = np.asarray(image.dataobj, dtype=np.float32)
    data, affine = _to_working(volume, image.affine, label=False)
    return WorkingImage(
        data.astype(np.float32, copy=False),
        affine,
        np.asarray(image.affine, dtype=np.float64),
        tuple(int(n) for n in image.shape[:3]),  # type: ignore[arg-type]
    )


def working_mask(mask: np.ndarray, work: WorkingImage) -> np.ndarray:
    """Step 1 for a mask (original grid, bool): nearest-neighbour onto ``work``'s grid (uint8)."""
    data, affine = _to_working(mask.astype(np.uint8), work.original_affine, label=True)
    if data.shape != work.shape or not np.allclose(affine, work.affine, atol=1e-6):
        raise ValueError(
            f"mask resampled to {data.shape} does not match the image's working grid {work.shape}"
        )
    return data.astype(np.uint8, copy=False)


def crop_start(bb_min: np.ndarray, bb_max: np.ndarray, size: int) -> np.ndarray:
    """Working index of the crop's first voxel, as torchio ``CropOrPad(mask_name=...)`` centres.

    ``bb_min`` (inclusive) and ``bb_max`` (exclusive) bound the mask (working voxels). torchio
    centres on their mean and, when that centre and an even crop size disagree on being a whole
    index, shifts it down by half a voxel; a negative start (or an end past the grid) is padding.
    """
    starts = []
    for lo, hi in zip(bb_min, bb_max, strict=True):
        centre = (float(lo) + float(hi)) / 2.0
        if (size % 2 == 0) ^ (centre % 1 == 0):
            centre -= 0.5
        starts.append(int(centre - size / 2))
    return np.asarray(starts, dtype=np.int64)


def crop(volume: np.ndarray, start: np.ndarray, size: int) -> np.ndarray:
    """The ``size``^3 block of ``volume`` from ``start`` (working voxels), padded with 0."""
    out = np.zeros((size, size, size), dtype=volume.dtype)
    dst, src = [], []
    for s, n in zip(start, volume.shape, strict=True):
        lo, hi = max(int(s), 0), min(int(s) + size, n)
        if hi <= lo:
            return out
        dst.append(slice(lo - int(s), hi - int(s)))
        src.append(slice(lo, hi))
    out[tuple(dst)] = volume[tuple(src)]
    return out


class PasteBack:
    """Step 5: a crop's values onto the original grid by nearest neighbour, inside its footprint.

    ``footprint``: original-grid slices holding every original voxel whose nearest working voxel
    lies in the crop and inside the working grid; the gather table (one int32 per footprint
    voxel, -1 where nothing is pasted) is computed once per target.
    """

    def __init__(self, work: WorkingImage, start: np.ndarray, size: int) -> None:
        to_working = np.linalg.inv(work.affine) @ work.original_affine
        lo = np.maximum(np.asarray(start), 0)
        hi = np.minimum(np.asarray(start) + size, np.asarray(work.shape))
        corners = np.array(
            [[(lo[a] - 1, hi[a])[b] for a, b in enumerate(bits)] for bits in np.ndindex(2, 2, 2)],
            dtype=np.float64,
        )
        to_original = np.linalg.inv(to_working)
        original = corners @ to_original[:3, :3].T + to_original[:3, 3]
        shape = np.asarray(work.original_shape)
        first = np.clip(np.floor(original.min(axis=0)).astype(int), 0, shape)
        last = np.clip(np.ceil(original.max(axis=0)).astype(int) + 1, 0, shape)
        self.footprint = tuple(slice(int(a), int(b)) for a, b in zip(first, last, strict=True))
        axes = [np.arange(s.start, s.stop, dtype=np.float64) for s in self.footprint]
        shape3 = [len(a) for a in axes]
        flat = np.zeros(shape3, dtype=np.int32)
        inside = np.ones(shape3, dtype=bool)
        strides = (size * size, size, 1)
        for c in range(3):  # one working axis at a time: a few footprint-sized arrays at most
            position = sum(
                to_working[c, a] * axes[a].reshape([-1 if b == a else 1 for b in range(3)])
                for a in range(3)
            )
            nearest = np.floor(position + to_working[c, 3] + 0.5).astype(np.int64)
            inside &= (nearest >= lo[c]) & (nearest < hi[c])
            flat += ((nearest - int(start[c])) * strides[c]).astype(np.int32)
        self.table = np.where(inside, flat, -1).astype(np.int32)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """``values`` (``size``^3) on the footprint (same dtype, 0 where nothing is pasted)."""
        flat = values.reshape(-1)
        out = flat[np.maximum(self.table, 0)]
        out[self.table < 0] = 0
        return out


def run_sam_med3d(
    model: torch.nn.Module,
    work: WorkingImage,
    reference: np.ndarray,
    spacing: tuple[float, float, float],
    config: ProtocolConfig,
    generator: torch.Generator,
    *,
    amp_dtype: torch.dtype | None = None,
) -> TargetResult:
    """Run the ``sam-med3d`` protocol on one target (module docstring).

    ``work``: the case's image on the working grid (:func:`working_image`); ``reference``: the
    target's bool mask on the original grid (not empty); ``spacing``: original voxel size (mm).
    """
    import torchio as tio

    from neurosam3d.model import Predictor

    size = int(model.img_size)
    low = int(model.low_res_size)
    mask_w = working_mask(reference, work)
    if not mask_w.any():
        raise ValueError("the mask vanishes when resampled to 1.5 mm: nothing to prompt")
    nonzero = [
        np.flatnonzero(mask_w.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    bb_min = np.array([n[0] for n in nonzero])
    bb_max = np.array([n[-1] for n in nonzero]) + 1
    start = crop_start(bb_min, bb_max, size)
    roi_gt = torch.from_numpy(crop(mask_w, start, size) > 0)[None]
    del mask_w
    roi_image = torch.from_numpy(crop(work.data, start, size))[None]
    roi_image = tio.ZNormalization.znorm(roi_image, roi_image > 0)
    if roi_image is None:
        raise ValueError("the crop's voxels > 0 have zero standard deviation: cannot z-normalise")
    paste = PasteBack(work, start, size)
    scorer = ReferenceScorer(reference, spacing, config.nsd_tolerance_mm)
    rule = get_click_rule(config.click_rule)
    device = next(model.parameters()).device
    predictor = Predictor(model, device=device, amp_dtype=amp_dtype)
    predictor.set_image(roi_image[None].float())
    logits = torch.zeros(1, 1, low, low, low, device=device)
    current = torch.zeros_like(roi_gt)  # upstream's first click: uniform over the whole mask
    points = torch.zeros(1, 0, 3)
    labels = torch.zeros(1, 0, dtype=torch.long)
    scored: list[ClickScore] = []
    probs = np.zeros((size, size, size), np.float32)
    for click in range(1, config.clicks + 1):
        step = rule(roi_gt, current, generator=generator)
        if int(step.labels[0, 0]) != NOT_A_POINT:
            points = torch.cat([points, step.coords.float()], dim=1)
            labels = torch.cat([labels, step.labels.long()], dim=1)
        out = predictor.predict(points, labels, mask_input=logits, multimask=False)
        logits = out.low_res_logits
        probs = out.probabilities[0, 0].float().cpu().numpy()
        current = torch.from_numpy(probs > config.threshold)[None]
        scores = scorer.score_box(paste(probs) > config.threshold, paste.footprint)
        scored.append(ClickScore(click, scores, windows=1, windows_predicted=1, seeded_clicks=0))
        logger.debug("click %d: Dice %.4f", click, scores.dice)
    return TargetResult(scored, paste.footprint, paste(probs), config.threshold)

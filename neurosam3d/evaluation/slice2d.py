"""The ``slice2d`` protocol: a 2-D model (SAM, SAM-Med2D) on a volume, slice by slice.

So that 2-D foundation models appear in the same tables as the 3-D ones ("N points" rows of the
seed's comparison, N = the slices that contain the target), per target:

1. the image is reoriented to canonical RAS without resampling (:func:`working_volume`, an exact
   axis permutation through :func:`~.geometry.grid_for_image`); its **axial** slices are the
   third working axis, seen as ``H x W`` images with rows along the first (R) axis and columns
   along the second (A), as the seed's ``img3D[..., k]``;
2. only the slices that contain the target are prompted (the others predict background);
3. each such slice is rescaled to 0-255 on its own range (``(s - min) / (max - min + 1e-10) *
   255``, float, as the seed's ``repixel_value``), copied to 3 channels, resized so its longest
   side is the model input (bilinear, antialiased), normalised with SAM's pixel mean/std and
   zero-padded at the bottom/right (SAM's transform, :class:`~neurosam3d.model.sam2d.Predictor2D`)
   and encoded **once per case** (:class:`SliceEmbeddings`: targets of a case share slices);
4. round 1 clicks every prompted slice once in the slice's target (the click rule's first
   click: in the slice's largest 8-connected component) and keeps, per slice, the highest-IoU
   mask of the multimask output; round ``r > 1`` clicks every prompted slice once in its error
   region (FN positive, FP negative; the same named, seeded rules of :mod:`neurosam3d.prompts`
   as the 3-D protocols, on the slice's own pixels) and decodes one mask from all the slice's
   clicks so far and its previous low-resolution logits. Slices are decoded in batches;
5. after every round the slices' probabilities (sigmoid of the logits upsampled to the slice, as
   SAM's ``postprocess_masks``) are stacked, mapped back onto the original grid (the exact
   inverse permutation, inside the slab of the target's slices only) and scored there with the
   same Dice and NSD as the 3-D protocols (default tolerance 2 mm). A round counts as one click
   in the results (``click`` = round; ``windows`` = ``windows_predicted`` = the prompted slices
   N), so tables label these rows "N points", "3N points"... The target's score is its final
   round's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch

from neurosam3d.evaluation.metrics import ReferenceScorer
from neurosam3d.evaluation.protocol import (
    SLICE2D,
    ClickScore,
    ProtocolConfig,
    TargetResult,
    _working_bbox,
)
from neurosam3d.prompts import get_click_rule
from neurosam3d.transforms.geometry import (
    Box,
    GridMap,
    box_to_footprint,
    grid_for_image,
    sample_box,
)

logger = logging.getLogger(__name__)

#: Working orientation of the protocol (no resampling).
ORIENTATION = "RAS"
#: Most slices decoded in one batch (SAM: about 12 MB of upsampled logits per slice).
DEFAULT_SLICE_BATCH = 16
#: Added to a slice's intensity range before rescaling (a constant slice becomes 0).
_RANGE_EPS = 1e-10


@dataclass(frozen=True)
class SliceVolume:
    """A case's image on the protocol's working grid: ``data`` float32 ``I x J x K`` in canonical
    RAS (axial slices ``data[:, :, k]``), ``grid`` the exact map from the original grid."""

    data: np.ndarray
    grid: GridMap


def working_volume(image: nib.Nifti1Image) -> SliceVolume:
    """Step 1: the image reoriented to canonical RAS (voxels copied, never interpolated)."""
    grid = grid_for_image(image, ORIENTATION)
    volume = np.asarray(image.dataobj, dtype=np.float32)
    data = sample_box(volume, grid, Box((0, 0, 0), grid.shape))
    return SliceVolume(data, grid)


def slice_pixels(values: np.ndarray) -> np.ndarray:
    """One slice (``H x W``) rescaled to 0-255 on its own range (float32)."""
    values = np.asarray(values, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    return ((values - lo) / (hi - lo + _RANGE_EPS) * 255.0).astype(np.float32)


class SliceEmbeddings:
    """Embeddings of a case's axial slices, each computed once (thread-safe), kept on the device.

    ``get(k)`` returns the ``1 x E x G x G`` embedding of working slice ``k`` (steps 3's
    preprocessing, one slice per encoder call so an embedding never depends on which other
    slices were encoded with it). SAM's take 4 MiB per slice, SAM-Med2D's 256 KiB.
    """

    def __init__(
        self, model: torch.nn.Module, volume: SliceVolume, amp_dtype: torch.dtype | None = None
    ) -> None:
        from neurosam3d.model.sam2d import Predictor2D

        device = next(model.parameters()).device
        self._predictor = Predictor2D(model, device=device, amp_dtype=amp_dtype)  # type: ignore[arg-type]
        self._volume = volume
        self._cache: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()

    @property
    def encoded(self) -> int:
        """How many slices have been encoded so far."""
        return len(self._cache)

    def get(self, k: int) -> torch.Tensor:
        with self._lock:
            if k not in self._cache:
                pixels = slice_pixels(self._volume.data[:, :, k])
                self._predictor.set_image(torch.from_numpy(pixels))
                self._cache[k] = self._predictor.embedding  # type: ignore[assignment]
            return self._cache[k]


def check_protocol_model(model: torch.nn.Module, protocol: str, source: str) -> None:
    """``ValueError`` naming ``source`` when the model and the protocol do not go together:
    ``slice2d`` evaluates 2-D models only, the other protocols 3-D models only."""
    from neurosam3d.model.sam2d import Sam2D

    two_d = isinstance(model, Sam2D)
    if protocol == SLICE2D and not two_d:
        raise ValueError(
            f"{source}: the slice2d protocol evaluates 2-D models (SAM, SAM-Med2D: sam_vit_b, "
            f"sam_med2d_vit_b); this is a 3-D {type(model).__name__}: use --protocol full or "
            "sam-med3d"
        )
    if protocol != SLICE2D and two_d:
        raise ValueError(
            f"{source}: a 2-D model ({type(model).__name__}) cannot run the {protocol} "
            "protocol: use --protocol slice2d"
        )


def run_slice2d(
    model: torch.nn.Module,
    volume: SliceVolume,
    reference: np.ndarray,
    config: ProtocolConfig,
    generator: torch.Generator,
    *,
    amp_dtype: torch.dtype | None = None,
    embeddings: SliceEmbeddings | None = None,
    max_batch: int = DEFAULT_SLICE_BATCH,
) -> TargetResult:
    """Run the ``slice2d`` protocol on one target (module docstring).

    ``volume``: the case's image on the working grid (:func:`working_volume`); ``reference``: the
    target's bool mask on the original grid (not empty); ``embeddings``: the case's slice
    embeddings, shared by its targets (default: a cache of this target's own).
    """
    from neurosam3d.model.sam2d import Predictor2D

    grid = volume.grid
    embeddings = embeddings if embeddings is not None else SliceEmbeddings(model, volume, amp_dtype)
    lo, hi = _working_bbox(reference, grid)
    k0, k1 = int(lo[2]), int(hi[2])
    box = Box((0, 0, k0), (grid.shape[0], grid.shape[1], k1 - k0))
    slab_gt = sample_box(reference, grid, box, order=0) > 0.5
    present = np.flatnonzero(slab_gt.any(axis=(0, 1)))
    slices = [k0 + int(k) for k in present]
    n = len(slices)
    h, w = grid.shape[0], grid.shape[1]
    targets = torch.from_numpy(np.ascontiguousarray(np.moveaxis(slab_gt[:, :, present], 2, 0)))
    targets = targets[:, None]  # N x 1 x H x W: a batch of 2-D masks for the click rules
    del slab_gt
    scorer = ReferenceScorer(reference, grid.original_spacing, config.nsd_tolerance_mm)
    rule = get_click_rule(config.click_rule)
    device = next(model.parameters()).device
    predictor = Predictor2D(model, device=device, threshold=config.threshold, amp_dtype=amp_dtype)  # type: ignore[arg-type]
    low = int(model.low_res_size)
    points = torch.zeros(n, 0, 2)
    labels = torch.zeros(n, 0, dtype=torch.long)
    logits = torch.zeros(n, 1, low, low, device=device)
    probs = np.zeros((n, h, w), np.float32)
    slab = np.zeros(box.size, np.float32)
    current: torch.Tensor | None = None
    scored: list[ClickScore] = []
    footprint: tuple[slice, ...] = ()
    on_original = np.zeros(0, np.float32)
    for click in range(1, config.clicks + 1):
        step = rule(targets, current, generator=generator)
        points = torch.cat([points, step.coords[:, :, [2, 1]].float()], dim=1)  # (x, y) pixels
        labels = torch.cat([labels, step.labels.long()], dim=1)
        first = click == 1
        for start in range(0, n, max_batch):
            part = slice(start, min(start + max_batch, n))
            predictor.set_embedding(torch.cat([embeddings.get(k) for k in slices[part]]), (h, w))
            out = predictor.predict(
                points[part],
                labels[part],
                mask_input=None if first else logits[part],
                multimask=first,
            )
            if first:  # the highest-IoU of the multimask outputs, per slice
                rows = torch.arange(out.iou.shape[0], device=out.iou.device)
                best = out.iou.argmax(dim=1)
                logits[part] = out.low_res_logits[rows, best][:, None]
                probs[part] = out.probabilities[rows, best].cpu().numpy()
            else:
                logits[part] = out.low_res_logits
                probs[part] = out.probabilities[:, 0].cpu().numpy()
        current = torch.from_numpy(probs > config.threshold)[:, None]
        slab[:, :, present] = np.moveaxis(probs, 0, 2)
        footprint, on_original = box_to_footprint(slab, grid, box)
        scores = scorer.score_box(on_original > config.threshold, footprint)
        scored.append(ClickScore(click, scores, windows=n, windows_predicted=n, seeded_clicks=0))
        logger.debug("round %d (%d slices): Dice %.4f", click, n, scores.dice)
    return TargetResult(scored, footprint, on_original, config.threshold)


def case_runner(
    model: torch.nn.Module,
    image: nib.Nifti1Image,
    config: ProtocolConfig,
    amp_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, Callable[[np.ndarray, torch.Generator], TargetResult]]:
    """What :mod:`.api` needs per case: the overlay volume (original grid, float32) and the
    function running one target (its reference, its generator) on the case's shared slices."""
    volume = working_volume(image)
    embeddings = SliceEmbeddings(model, volume, amp_dtype)

    def run_one(reference: np.ndarray, generator: torch.Generator) -> TargetResult:
        return run_slice2d(
            model, volume, reference, config, generator, amp_dtype=amp_dtype, embeddings=embeddings
        )

    return np.asarray(image.dataobj, dtype=np.float32), run_one

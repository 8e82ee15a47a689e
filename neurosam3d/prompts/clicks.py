"""Simulated clicks for interactive 3D segmentation, batched in torch.

Conventions (those of the model's prompt encoder and :class:`neurosam3d.model.Predictor`):

- masks are ``B x D x H x W`` (or ``B x 1 x D x H x W``); ``target`` is the reference (bool or
  0/1), ``probs`` the current prediction as **probabilities** in ``[0, 1]`` (``sigmoid`` of the
  logits, upsampled to the target's grid) or a bool mask. Probabilities are thresholded at
  ``threshold`` (default 0.5); passing logits raises, since thresholding logits at 0.5 is the
  seed's bug (it means p > 0.62).
- a click is one point per batch item: ``coords`` ``B x 1 x 3`` float32 voxel indices along the
  mask's last three axes (D, H, W), ``labels`` ``B x 1`` int64 with 1 positive, 0 negative and
  -1 "not a point" (ignored by the prompt encoder). 2-D slices are ``B x 1 x H x W`` (a click's
  first coordinate is then 0): components are then 8-connected and distance transforms 2-D.

Every rule returns exactly one click per item, in the same order as the batch. Policy:

1. first click (``probs is None``): the error region is the target's largest 26-connected
   component, so the first click is positive and lies in the largest part of the target;
2. later clicks: false negatives (target and not prediction) give positive clicks, false
   positives (prediction and not target) negative clicks;
3. no error left but a non-empty target: fall back to rule 1 (a positive click in the target's
   largest component, which confirms the prediction);
4. empty target and empty prediction: a "not a point" click (label -1) at the volume centre.
   (An empty target with false positives is case 2: negative clicks.)

Rules: ``random_error`` picks a voxel uniformly from the error region (FN and FP together, on the
masks' device, seeded by a :class:`torch.Generator` on that device); ``center_error`` picks the
voxel farthest from the boundary (Euclidean distance transform maximum, voxel units) of the
largest connected error component, FN and FP components compared by size (ties to FN), as in
the CVPR 2025 interactive-segmentation challenge. It is deterministic and ignores the generator.
Connected components and distance transforms run on the CPU (see :mod:`.components`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from neurosam3d.prompts.components import (
    component_sizes_np,
    deepest_voxel_np,
    largest_component,
)

POSITIVE = 1
NEGATIVE = 0
NOT_A_POINT = -1


@dataclass(frozen=True)
class Clicks:
    """Points for the prompt encoder.

    ``coords``: ``B x N x 3`` float32 voxel indices (D, H, W axes of the model input);
    ``labels``: ``B x N`` int64 (1 positive, 0 negative, -1 not a point).
    """

    coords: torch.Tensor
    labels: torch.Tensor

    def append(self, other: Clicks) -> Clicks:
        """The clicks of ``self`` followed by those of ``other`` (same batch size)."""
        return Clicks(
            torch.cat((self.coords, other.coords), dim=1),
            torch.cat((self.labels, other.labels), dim=1),
        )


class ClickRule(Protocol):
    """Signature shared by every rule in :data:`CLICK_RULES`."""

    def __call__(
        self,
        target: torch.Tensor,
        probs: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        threshold: float = 0.5,
    ) -> Clicks: ...


def _as_volume_batch(mask: torch.Tensor, name: str) -> torch.Tensor:
    """``B x D x H x W`` view of ``mask`` given as ``B x D x H x W`` or ``B x 1 x D x H x W``."""
    if mask.ndim == 5 and mask.shape[1] == 1:
        return mask[:, 0]
    if mask.ndim != 4:
        raise ValueError(
            f"{name} must be B x D x H x W or B x 1 x D x H x W, got shape {tuple(mask.shape)}"
        )
    return mask


def binarise(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Bool mask ``probs > threshold`` of probabilities in [0, 1] (a bool mask passes through).

    Raises ``ValueError`` for values outside [0, 1]: those are logits, apply ``torch.sigmoid``.
    """
    if probs.dtype == torch.bool:
        return probs
    lo, hi = torch.aminmax(probs.detach())
    if float(lo) < 0.0 or float(hi) > 1.0:
        raise ValueError(
            f"click rules take probabilities in [0, 1], got values in [{float(lo):.3g}, "
            f"{float(hi):.3g}]: these look like logits, pass torch.sigmoid(logits)"
        )
    return probs > threshold


def error_regions(
    target: torch.Tensor, probs: torch.Tensor | None, threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """False-negative and false-positive regions after the fallback policy (module docstring).

    Returns ``(fn, fp, void)``: ``fn`` and ``fp`` ``B x D x H x W`` bool, ``void`` ``B`` bool for
    items with an empty target and an empty prediction (they get a "not a point" click).
    """
    gt = _as_volume_batch(target, "target").bool()
    if probs is None:
        fn = largest_component(gt)
        fp = torch.zeros_like(gt)
    else:
        pred = _as_volume_batch(probs, "probs")
        if pred.shape != gt.shape:
            raise ValueError(
                f"probs shape {tuple(pred.shape)} differs from target shape {tuple(gt.shape)}"
            )
        pred = binarise(pred, threshold)
        fn = gt & ~pred
        fp = pred & ~gt
        no_error = ~(fn | fp).flatten(1).any(dim=1)
        if bool(no_error.any()):
            fn = fn.clone()
            fn[no_error] = largest_component(gt[no_error])
    void = ~(fn | fp).flatten(1).any(dim=1)
    return fn, fp, void


def _void_fill(clicks: Clicks, void: torch.Tensor, shape: tuple[int, ...]) -> Clicks:
    """Replace the clicks of ``void`` items by a "not a point" click at the volume centre."""
    if not bool(void.any()):
        return clicks
    centre = torch.tensor([(s - 1) / 2 for s in shape], dtype=torch.float32)
    coords = torch.where(void[:, None, None], centre.to(clicks.coords.device), clicks.coords)
    labels = torch.where(void[:, None], torch.full_like(clicks.labels, NOT_A_POINT), clicks.labels)
    return Clicks(coords, labels)


def _unravel(flat: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """``B`` flat C-order indices into ``B x 3`` float32 voxel indices for a D x H x W grid."""
    _, h, w = shape
    return torch.stack((flat // (h * w), (flat // w) % h, flat % w), dim=-1).float()


def random_error_click(
    target: torch.Tensor,
    probs: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
) -> Clicks:
    """One click per item at a voxel drawn uniformly from the error region (FN and FP).

    ``generator`` must live on the masks' device; the draw is the argmax of uniform noise over
    the error voxels, so it is one batched operation.
    """
    fn, fp, void = error_regions(target, probs, threshold)
    shape = tuple(fn.shape[1:])
    noise = torch.rand(fn.shape, generator=generator, device=fn.device)
    noise.masked_fill_(~(fn | fp), -1.0)  # in place: one float tensor of the masks' size
    flat = noise.flatten(1).argmax(dim=1)
    labels = fn.flatten(1).gather(1, flat[:, None]).long()  # FN -> 1, FP -> 0
    clicks = Clicks(_unravel(flat, shape)[:, None, :], labels)
    return _void_fill(clicks, void, shape)


def center_error_click(
    target: torch.Tensor,
    probs: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
) -> Clicks:
    """One click per item at the centre of the largest connected error region.

    The largest 26-connected component among the FN and the FP components (ties to FN) is
    chosen; the click is its distance-transform maximum. Deterministic: ``generator`` is unused.
    """
    del generator  # deterministic rule; the parameter keeps the ClickRule signature
    fn, fp, void = error_regions(target, probs, threshold)
    shape = tuple(fn.shape[1:])
    fn_host = fn.cpu().numpy()
    fp_host = fp.cpu().numpy()
    coords = np.zeros((fn.shape[0], 3), dtype=np.float32)
    labels = np.zeros(fn.shape[0], dtype=np.int64)
    for b in np.flatnonzero(~void.cpu().numpy()):
        best: tuple[int, int, np.ndarray, int] | None = None  # (size, label, labels map, id)
        for click_label, region in ((POSITIVE, fn_host[b]), (NEGATIVE, fp_host[b])):
            if not region.any():
                continue
            comp, sizes = component_sizes_np(region)
            k = int(np.argmax(sizes))
            if best is None or sizes[k] > best[0]:
                best = (int(sizes[k]), click_label, comp, k + 1)
        assert best is not None  # void items are skipped
        _, labels[b], comp, comp_id = best
        coords[b] = deepest_voxel_np(comp == comp_id)
    clicks = Clicks(
        torch.from_numpy(coords)[:, None, :].to(fn.device),
        torch.from_numpy(labels)[:, None].to(fn.device),
    )
    return _void_fill(clicks, void, shape)


CLICK_RULES: dict[str, ClickRule] = {
    "random_error": random_error_click,
    "center_error": center_error_click,
}


def get_click_rule(name: str) -> ClickRule:
    """The rule registered as ``name`` in :data:`CLICK_RULES`; ``KeyError`` lists the names."""
    try:
        return CLICK_RULES[name]
    except KeyError:
        raise KeyError(
            f"unknown click rule {name!r}; choose one of {sorted(CLICK_RULES)}"
        ) from None


def box_from_mask(target: torch.Tensor) -> torch.Tensor:
    """Box prompt from the extent of each target: ``B x 6`` float32 voxel indices.

    Layout ``(d_min, h_min, w_min, d_max, h_max, w_max)`` with both corners inclusive (the first
    and last foreground voxel along each axis), as the prompt encoder's box embedding expects
    (it adds 0.5 to reach voxel centres). An empty target gets the whole volume.
    """
    gt = _as_volume_batch(target, "target").bool()
    out = []
    for axis in range(3):
        other = tuple(a + 1 for a in range(3) if a != axis)
        profile = gt.any(dim=other)  # B x size along this axis
        size = profile.shape[1]
        idx = torch.arange(size, device=gt.device)
        lo = torch.where(profile, idx, size).amin(dim=1)
        hi = torch.where(profile, idx, -1).amax(dim=1)
        empty = hi < 0
        out.append((torch.where(empty, 0, lo), torch.where(empty, size - 1, hi)))
    mins = torch.stack([lo for lo, _ in out], dim=1)
    maxs = torch.stack([hi for _, hi in out], dim=1)
    return torch.cat((mins, maxs), dim=1).float()

"""The simulated interaction loop shared by training and validation (SAM-Med3D style).

The image is encoded once; then, for each of ``num_clicks`` steps, one new click is simulated
from the current prediction (the first from the target alone) and appended to the clicks so far,
and the prompt encoder and mask decoder run on all clicks plus the previous step's low-resolution
logits (none at the first step). At ``refine_step`` no click is added: the model refines its
mask from the same clicks. The previous logits are detached (each step learns to correct a
given mask; gradients do not flow back through earlier steps), and click simulation sees
probabilities (sigmoid of the logits upsampled to the crop), never raw logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from neurosam3d.prompts import ClickRule, Clicks


@dataclass(frozen=True)
class InteractionOutput:
    """``loss``: scalar (mean over steps of Dice + BCE + weighted MSE of the IoU head against
    the IoU of the thresholded prediction; 0 when no loss was asked for); ``dice``: ``steps x B`` float32 hard Dice after each step (no gradient;
    NaN where target and prediction are both empty, see :func:`hard_dice`);
    ``probs``: ``B x 1 x S^3`` probabilities after the last step; ``clicks``: all clicks."""

    loss: torch.Tensor
    dice: torch.Tensor
    probs: torch.Tensor
    clicks: Clicks


def soft_dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (1 - soft Dice) + BCE; ``B x 1 x S^3`` float logits and 0/1 target.

    Soft Dice uses squared probabilities in the denominator (as MONAI's ``squared_pred``) and a
    smoothing of 1e-5 voxels, per item.
    """
    logits = logits.float()
    probs = torch.sigmoid(logits).flatten(1)
    ref = target.flatten(1)
    inter = (probs * ref).sum(1)
    denom = (probs * probs).sum(1) + (ref * ref).sum(1)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return (1 - dice).mean() + bce


def hard_dice(pred: torch.Tensor, target: torch.Tensor, *, empty: float = math.nan) -> torch.Tensor:
    """Dice of bool ``B x ...`` masks, per item (``B`` float32).

    Empty-mask policy, that of :mod:`neurosam3d.evaluation.metrics`: a pair where both masks are
    empty scores ``empty``, by default NaN (there is nothing to score; means over items use
    ``nanmean``, so such a pair does not count); exactly one empty mask scores 0.
    """
    p = pred.flatten(1).float()
    t = target.flatten(1).float()
    inter = (p * t).sum(1)
    total = p.sum(1) + t.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, empty))


def hard_iou(pred: torch.Tensor, target: torch.Tensor, *, empty: float = math.nan) -> torch.Tensor:
    """Intersection over union of bool ``B x ...`` masks, per item (``B`` float32); the empty-mask
    policy of :func:`hard_dice`. What the IoU head learns to predict (as in SAM)."""
    p = pred.flatten(1).float()
    t = target.flatten(1).float()
    inter = (p * t).sum(1)
    union = p.sum(1) + t.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, empty))


def _clicks(
    rule: ClickRule,
    ref: torch.Tensor,
    probs: torch.Tensor | None,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> Clicks:
    """One click per item: ``rule`` on the batch, or on each item with its own generator."""
    if generator is None or isinstance(generator, torch.Generator):
        return rule(ref, probs, generator=generator)
    if len(generator) != ref.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {ref.shape[0]}")
    per_item = [
        rule(ref[i : i + 1], None if probs is None else probs[i : i + 1], generator=gen)
        for i, gen in enumerate(generator)
    ]
    return Clicks(torch.cat([c.coords for c in per_item]), torch.cat([c.labels for c in per_item]))


def run_interaction(
    model: torch.nn.Module,
    image: torch.Tensor,
    target: torch.Tensor,
    *,
    num_clicks: int,
    rule: ClickRule,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    refine_step: int | None = None,
    compute_loss: bool = True,
    iou_loss_weight: float = 1.0,
) -> InteractionOutput:
    """Run ``num_clicks`` interaction steps on a batch.

    Args:
        model: a :class:`neurosam3d.model.Sam3D` (``image_encoder``, ``predict_masks``,
            ``upscale_logits``).
        image: ``B x 1 x S^3`` float32 normalised crops, ``S`` the model's input size.
        target: ``B x 1 x S^3`` float32 0/1 reference masks.
        rule: click rule from :data:`neurosam3d.prompts.CLICK_RULES`.
        generator: seeds the click rule (on ``image``'s device): one generator for the batch,
            or one per item (``B`` generators), so that each item's clicks depend on its own
            seed only, not on which items share its batch (validation).
        refine_step: step index (>= 1) that adds no click, or ``None``.
        compute_loss: build the loss graph (training) or not (validation).
        iou_loss_weight: weight of the IoU head's MSE against the hard IoU of each step's
            prediction (thresholded at 0.5), its training signal.
    """
    if refine_step == 0:
        raise ValueError("the first step needs a click: refine_step must be >= 1")
    embedding = model.image_encoder(image)
    size = tuple(target.shape[-3:])
    ref = target > 0.5
    clicks: Clicks | None = None
    low_res: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    losses = []
    dice = []
    for step in range(num_clicks):
        if step != refine_step or clicks is None:
            new = _clicks(rule, ref, probs, generator)
            clicks = new if clicks is None else clicks.append(new)
        low_res_logits, iou_pred = model.predict_masks(
            embedding, clicks.coords, clicks.labels, mask_input=low_res
        )
        logits = model.upscale_logits(low_res_logits, size)
        probs = torch.sigmoid(logits.detach().float())
        pred = probs > 0.5
        step_dice = hard_dice(pred, ref)
        if compute_loss:  # the IoU head's target: the IoU of the thresholded prediction (SAM);
            # a correct empty prediction is perfect (1)
            iou_target = torch.nan_to_num(hard_iou(pred, ref), nan=1.0)
            iou_loss = F.mse_loss(iou_pred[:, 0].float(), iou_target)
            losses.append(soft_dice_bce(logits, target) + iou_loss_weight * iou_loss)
        dice.append(step_dice)
        low_res = low_res_logits.detach()
    assert probs is not None and clicks is not None
    loss = torch.stack(losses).mean() if losses else image.new_zeros(())
    return InteractionOutput(loss=loss, dice=torch.stack(dice), probs=probs, clicks=clicks)

"""Loss, Dice and the interaction loop on a tiny model; the loss falls on a fixed batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurosam3d.model import build_model
from neurosam3d.prompts import get_click_rule
from neurosam3d.training.datasets import CropDataset
from neurosam3d.training.interaction import hard_dice, run_interaction, soft_dice_bce
from neurosam3d.training.samples import SampleFilter, SampleTable, read_manifests


def test_hard_dice_hand_computed_with_empty_policy() -> None:
    pred = torch.zeros(3, 4, dtype=torch.bool)
    ref = torch.zeros(3, 4, dtype=torch.bool)
    pred[0, :2] = True
    ref[0, 1:4] = True  # overlap 1, sizes 2 + 3 -> 0.4
    pred[1, 0] = True  # prediction without reference -> 0
    dice = hard_dice(pred, ref)  # empty vs empty: NaN, as neurosam3d.evaluation.metrics
    assert dice[:2].tolist() == pytest.approx([0.4, 0.0]) and dice[2].isnan()
    assert hard_dice(pred, ref, empty=1.0)[2] == 1.0


def test_soft_dice_bce_is_small_for_confident_correct_logits() -> None:
    target = torch.zeros(2, 1, 4, 4, 4)
    target[:, :, :2] = 1
    good = soft_dice_bce((target * 2 - 1) * 20, target)
    bad = soft_dice_bce((1 - target * 2) * 20, target)
    assert float(good) < 1e-3 and float(bad) > 10


@pytest.fixture(scope="module")
def liver_batch(ct_manifest: Path) -> dict[str, torch.Tensor]:
    table = SampleTable.from_table(
        read_manifests([ct_manifest], SampleFilter(splits=["Val"], classes=["liver", "spleen"])),
        ct_manifest.parent,
    )
    ds = CropDataset(table, 64, train=False)
    items = [ds[0], ds[1]]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def test_refine_step_adds_no_click(liver_batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    out = run_interaction(
        model,
        liver_batch["image"],
        liver_batch["target"],
        num_clicks=4,
        rule=get_click_rule("center_error"),
        refine_step=2,
    )
    assert out.clicks.coords.shape == (2, 3, 3)  # 4 steps, one without a new click
    assert out.dice.shape == (4, 2) and out.probs.shape == (2, 1, 64, 64, 64)
    assert out.loss.requires_grad and out.loss.ndim == 0
    with pytest.raises(ValueError, match="first step"):
        run_interaction(
            model,
            liver_batch["image"],
            liver_batch["target"],
            num_clicks=2,
            rule=get_click_rule("center_error"),
            refine_step=0,
        )


def test_loss_decreases_on_a_fixed_batch(liver_batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = build_model("tiny")
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rule = get_click_rule("center_error")  # deterministic clicks: the batch is truly fixed
    losses = []
    for _ in range(8):
        out = run_interaction(
            model, liver_batch["image"], liver_batch["target"], num_clicks=2, rule=rule
        )
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses

"""Validation Dice: the evaluation's empty-mask policy, and clicks independent of the batching."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from neurosam3d.evaluation.metrics import dice as eval_dice
from neurosam3d.prompts import Clicks
from neurosam3d.training import module as module_lib
from neurosam3d.training.config import ClickConfig, TrainConfig, TrainerConfig
from neurosam3d.training.interaction import hard_dice
from neurosam3d.training.module import InteractiveSegmentationModule

S = 8


def _config() -> dict:
    clicks = ClickConfig(val_clicks=2, val_report=(1, 2))
    return TrainConfig(clicks=clicks, trainer=TrainerConfig(monitor="val/dice_2")).to_dict()


def _validate(module: L.LightningModule, items: list[dict], batch_size: int) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    loader = DataLoader(items, batch_size=batch_size)
    return trainer.validate(module, dataloaders=loader, verbose=False)[0]


def _items(n: int) -> list[dict]:
    return [
        {
            "image": torch.full((1, S, S, S), float(i)),
            "target": torch.zeros(1, S, S, S),
            "row": torch.tensor(i),
        }
        for i in range(n)
    ]


def test_hard_dice_follows_the_evaluation_empty_policy() -> None:
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert math.isnan(eval_dice(empty[0].numpy(), empty[0].numpy()))
    assert hard_dice(empty, empty).isnan().all()


def test_validation_leaves_empty_vs_empty_items_out_of_the_mean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rows 0, 1, 2: Dice after clicks 1 and 2; row 1 is an empty target with an empty prediction
    table = torch.tensor([[0.2, 0.4], [math.nan, math.nan], [0.6, 1.0]])

    def fake_interaction(model, image, target, *, num_clicks, **kw):
        rows = image[:, 0, 0, 0, 0].long()  # _items writes the row into the image
        b = image.shape[0]
        return SimpleNamespace(
            dice=table[rows].T[:num_clicks],
            probs=torch.zeros_like(image),
            clicks=Clicks(torch.zeros(b, 1, 3), torch.ones(b, 1, dtype=torch.long)),
        )

    module = InteractiveSegmentationModule(_config())
    monkeypatch.setattr(module_lib, "run_interaction", fake_interaction)
    metrics = _validate(module, _items(3), batch_size=2)
    assert metrics["val/dice_1"] == pytest.approx(0.4)  # nanmean(0.2, 0.6), not (0.2+1+0.6)/3
    assert metrics["val/dice_2"] == pytest.approx(0.7)
    assert metrics["val/items"] == 3


def test_validation_dice_does_not_depend_on_the_batch_size() -> None:
    from neurosam3d.model import get_config

    size = get_config("tiny").img_size
    gen = torch.Generator().manual_seed(0)
    items = []
    for row, (lo, hi) in enumerate([(10, 40), (20, 30), (5, 50)]):
        target = torch.zeros(1, size, size, size)
        target[:, lo:hi, lo:hi, lo + 3 : hi] = 1
        image = target * 2 + 0.5 * torch.randn(1, size, size, size, generator=gen)
        items.append({"image": image, "target": target, "row": torch.tensor(row)})
    torch.manual_seed(0)
    module = InteractiveSegmentationModule(_config())
    one = _validate(module, items, batch_size=1)
    two = _validate(module, items, batch_size=2)
    assert one["val/items"] == two["val/items"] == 3
    # same clicks per item; batched convolutions may round differently (float32), so not exact
    assert one["val/dice_1"] == pytest.approx(two["val/dice_1"], rel=1e-5)
    assert one["val/dice_2"] == pytest.approx(two["val/dice_2"], rel=1e-5)

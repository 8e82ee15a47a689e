"""A resumed fit sees exactly the training keys (and batch indices) of an uninterrupted one.

Uses the real :class:`ManifestDataModule` and :class:`BalancedSampler` under Lightning with a
trivial module, so it takes seconds: 3 batches per epoch, runs that cross epoch boundaries,
resumed from a checkpoint written mid-epoch during fit (``ModelCheckpoint``'s ``last.ckpt``) and
from one written after fit stopped mid-epoch (what ``neurosam3d.training.run`` saves).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

from neurosam3d.training.config import DataConfig
from neurosam3d.training.datamodule import ManifestDataModule
from neurosam3d.training.datasets import BalancedSampler

TOTAL_STEPS = 8


class KeyDataset(Dataset):
    """Returns the sampler's key itself."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        row, seed = (key, 0) if isinstance(key, int) else key
        return {"row": torch.tensor(row), "seed": torch.tensor(seed)}


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, list[int], list[int]]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        index = self.trainer.fit_loop.epoch_loop.total_batch_idx
        self.seen.append((index, batch["row"].tolist(), batch["seed"].tolist()))
        return (self.w - 1).pow(2).sum()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/w", self.w.detach().sum())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(
    max_steps: int, workers: int, out: Path, resume: str | None = None
) -> tuple[Recorder, L.Trainer]:
    cfg = DataConfig(samples_per_epoch=6, batch_size=2, num_workers=workers)
    data = ManifestDataModule(cfg, crop_size=8, seed=7)
    data.train_set, data.weights = KeyDataset(), np.full(5, 0.2)  # type: ignore[assignment]
    data.val_set = KeyDataset()  # type: ignore[assignment]
    module = Recorder()
    trainer = L.Trainer(
        max_steps=max_steps,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        accelerator="cpu",
        logger=False,
        callbacks=[ModelCheckpoint(dirpath=out, monitor="val/w", mode="max", save_last=True)],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    return module, trainer


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("workers", [0, 1])
def test_resumed_runs_see_the_keys_of_an_uninterrupted_run(tmp_path: Path, workers: int) -> None:
    full, _ = _fit(TOTAL_STEPS, workers, tmp_path / "full")
    assert [i for i, _, _ in full.seen] == list(range(TOTAL_STEPS))
    first, trainer = _fit(4, workers, tmp_path / "first")  # stops in the second epoch
    assert first.seen == full.seen[:4]
    mid_epoch = str(tmp_path / "first" / "last.ckpt")  # saved at the step-4 validation
    trainer.validate(first, datamodule=trainer.datamodule, verbose=False)
    after_fit = str(tmp_path / "after-fit.ckpt")
    trainer.save_checkpoint(after_fit)  # as run.py writes last.ckpt
    for name, ckpt in (("mid", mid_epoch), ("after", after_fit)):
        resumed, _ = _fit(TOTAL_STEPS, workers, tmp_path / name, resume=ckpt)
        assert resumed.seen == full.seen[4:], name


def test_sampler_length_is_the_epoch_and_later_epochs_are_whole_blocks() -> None:
    weights = np.full(4, 0.25)
    fresh = BalancedSampler(weights, 6, seed=1)
    blocks = []
    for epoch in range(3):
        fresh.set_epoch(epoch)
        blocks.append(list(fresh))
    resumed = BalancedSampler(weights, 6, seed=1, start_block=1, skip=4)
    assert len(resumed) == 6
    assert list(resumed) == blocks[1][4:]  # before any set_epoch (worker prefetch)
    resumed.set_epoch(5)  # Lightning's epoch number may differ from the block
    assert list(resumed) == blocks[1][4:]
    resumed.set_epoch(6)
    assert list(resumed) == blocks[2]

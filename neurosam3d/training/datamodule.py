"""Lightning data module over Parquet manifests (see :mod:`.datasets` for the items).

Crops come from the label tree's training store (:mod:`neurosam3d.store`); :meth:`setup` checks
that every selected row has an up-to-date entry (``StoreError`` otherwise) before any worker
starts.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from neurosam3d.training.config import DataConfig
from neurosam3d.training.datasets import BalancedSampler, CropDataset, ShardSampler
from neurosam3d.training.preprocessing import check_training_grid
from neurosam3d.training.samples import (
    SampleFilter,
    SampleTable,
    read_manifests,
    sampling_weights,
)

logger = logging.getLogger(__name__)


def select_rows(
    cfg: DataConfig, manifests: tuple[str, ...], splits: tuple[str, ...]
) -> SampleTable:
    """Manifest rows of ``splits`` passing the configured filters."""
    where = SampleFilter(
        splits=splits,
        datasets=cfg.datasets,
        classes=cfg.classes,
        categories=cfg.categories,
        cases=cfg.cases,
        min_voxels=cfg.min_voxels,
        min_volume_mm3=cfg.min_volume_mm3,
    )
    return SampleTable.from_table(read_manifests(manifests, where), cfg.root)


def evenly_spaced(n: int, k: int | None) -> np.ndarray:
    """``min(n, k)`` row positions spread evenly over ``0..n-1`` (all of them for ``k=None``)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


class ManifestDataModule(L.LightningDataModule):
    """Balanced random training crops and fixed validation crops of ``crop_size``^3 voxels.

    Under DDP the samplers take the rank and world size from the trainer (the trainer must be
    built with ``use_distributed_sampler=False`` so that Lightning does not wrap them).
    ``intensity``: the volume-level rule crops are normalised by (``"zscore"`` or
    ``"percentile"``: the run's preprocessing record,
    :func:`~neurosam3d.training.preprocessing.training_preprocessing`).
    """

    def __init__(
        self, cfg: DataConfig, crop_size: int, seed: int, *, intensity: str = "zscore"
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.crop_size = crop_size
        self.seed = seed
        self.intensity = intensity
        self.train_set: CropDataset | None = None
        self.val_set: CropDataset | None = None
        self.weights: np.ndarray | None = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _resume_position(self) -> tuple[int, int]:
        """``(block, batches)``: where the training draws continue, from the training batches
        done so far in all epochs (non-zero when resuming: Lightning restores its loop progress
        before it asks for the training dataloader). Lightning's epoch number is not used: a
        checkpoint written after ``fit`` stopped mid-epoch counts that epoch as complete."""
        if self.trainer is None:
            return 0, 0
        done = self.trainer.fit_loop.epoch_loop.batch_progress.total.processed
        return divmod(done, math.ceil(self.cfg.samples_per_epoch / self.cfg.batch_size))

    def setup(self, stage: str | None = None) -> None:
        cfg = self.cfg
        if stage in (None, "fit") and self.train_set is None:
            table = select_rows(cfg, cfg.train_manifests, cfg.train_splits)
            check_training_grid(table, cfg)
            self.weights = sampling_weights(table, cfg.dataset_weights, cfg.class_weights)
            self.train_set = CropDataset(
                table,
                self.crop_size,
                train=True,
                ct_window=cfg.ct_window,
                intensity=self.intensity,
                augment=cfg.augment,
            )
        if stage in (None, "fit", "validate") and self.val_set is None:
            table = select_rows(cfg, cfg.val_manifests, cfg.val_splits)
            table = table.subset(evenly_spaced(len(table), cfg.val_max_items))
            if len(table) == 0:
                raise ValueError("no validation rows: check data.val_manifests and data.val_splits")
            check_training_grid(table, cfg)
            self.val_set = CropDataset(
                table,
                self.crop_size,
                train=False,
                ct_window=cfg.ct_window,
                intensity=self.intensity,
            )
            logger.info("validation on %d fixed crops", len(table))

    def _loader(self, dataset: CropDataset, sampler: object) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=sampler,  # type: ignore[arg-type]
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None and self.weights is not None, "call setup('fit') first"
        rank, world = self._rank_world()
        block, batches = self._resume_position()
        sampler = BalancedSampler(
            self.weights,
            self.cfg.samples_per_epoch,
            self.seed,
            rank=rank,
            world_size=world,
            start_block=block,
            skip=batches * self.cfg.batch_size,
        )
        logger.info(
            "training shard: rank %d of %d, block %d, %d draws per epoch, keys %s",
            rank,
            world,
            block,
            len(sampler),
            sampler.digest(),
        )
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('validate') first"
        rank, world = self._rank_world()
        if len(self.val_set) < world:  # a rank without a batch would leave the others waiting
            raise ValueError(
                f"{len(self.val_set)} validation crop(s) for {world} DDP ranks: every rank "
                "needs one; raise data.val_max_items or add validation rows"
            )
        return self._loader(
            self.val_set, ShardSampler(len(self.val_set), rank=rank, world_size=world)
        )

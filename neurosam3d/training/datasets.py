"""Crop datasets and samplers: balanced, seeded, sharded per DDP rank.

A training item is keyed by ``(row, seed)``: the sampler draws manifest rows with the balanced
weights and a per-sample seed, so the crop position and the augmentation of every sample are
reproducible and independent of which worker or rank produces it. Validation items are keyed by
row and are deterministic (crop centred on the target's bounding box, no augmentation).

Crops come from the training store (:mod:`neurosam3d.store`), never from the NIfTI files.
Each item is a dict with ``image`` ``1 x S x S x S`` float32 (normalised intensities), ``target``
``1 x S x S x S`` float32 (0/1) and ``row`` (int64), ``S`` the crop size in voxels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from neurosam3d.store.layout import StoreError
from neurosam3d.store.reader import (
    StoreRows,
    bind_rows,
    random_centre,
    read_image_crop,
    read_target_crop,
)
from neurosam3d.training.augment import apply_augmentation, build_augmentation
from neurosam3d.training.crops import bbox_crop_start, crop_start
from neurosam3d.training.samples import SampleTable
from neurosam3d.transforms.intensity import DEFAULT_CT_WINDOW, SCALINGS


class CropDataset(Dataset):
    """Crops of ``crop_size``^3 voxels from the rows of ``table``, read from the training store.

    ``train=True``: keys are ``(row, seed)``, the crop is centred on a target voxel drawn from
    the store's locations of the row's class and augmented; ``train=False``: keys are rows, the
    crop is centred on the bounding box. Entries are checked when the dataset is built
    (:func:`neurosam3d.store.reader.bind_rows`: missing or stale ones raise ``StoreError``).
    Each item reads only its crop (image normalised by the volume-level rule ``intensity``,
    ``"zscore"`` or ``"percentile"`` (the model's record), with the case's stored statistics;
    the class's part of the label volume); nothing is cached, so a worker holds a few crops.
    """

    def __init__(
        self,
        table: SampleTable,
        crop_size: int,
        *,
        train: bool,
        ct_window: tuple[float, float] = DEFAULT_CT_WINDOW,
        intensity: str = "zscore",
        augment: Sequence[dict[str, Any]] = (),
    ) -> None:
        if intensity not in SCALINGS:
            raise ValueError(
                f"intensity rule {intensity!r}: training crops are normalised by one of "
                f"{SCALINGS} (volume-level rules, the statistics the store holds)"
            )
        self.table = table
        self.crop_size = crop_size
        self.train = train
        self.intensity = intensity
        self.store: StoreRows = bind_rows(table)
        ct = ~np.isnan(self.store.window[:, 0])
        if ct.any() and not np.allclose(self.store.window[ct], ct_window):
            stored = self.store.window[ct][0].tolist()
            raise StoreError(
                f"{table.root}/store.parquet: CT statistics were computed for the window "
                f"{stored}, data.ct_window is {list(ct_window)}: use the store's window (the "
                "one evaluation and inference use)"
            )
        self.transform = build_augmentation(augment) if train else None

    def __len__(self) -> int:
        return len(self.table)

    def crop_origin(self, row: int, seed: int) -> np.ndarray:
        """First voxel (3 int64) of the crop of ``row`` (training: drawn with ``seed``)."""
        if self.train:
            centre = random_centre(self.store, row, np.random.default_rng(seed))
            return crop_start(centre, self.crop_size)
        return bbox_crop_start(self.table.bbox_min[row], self.table.bbox_max[row], self.crop_size)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        row, seed = (key, 0) if isinstance(key, int | np.integer) else key
        row = int(row)
        start = self.crop_origin(row, seed)
        bbox = (self.table.bbox_min[row], self.table.bbox_max[row])
        image = read_image_crop(self.store, row, start, self.crop_size, self.intensity)
        mask = read_target_crop(self.store, row, start, self.crop_size, bbox)
        if self.transform is not None:
            image, mask = apply_augmentation(
                self.transform, image, mask, seed, self.table.spacing[row]
            )
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "target": torch.from_numpy(np.ascontiguousarray(mask > 0, dtype=np.float32))[None],
            "row": torch.tensor(row),
        }


class BalancedSampler(Sampler[tuple[int, int]]):
    """Draws ``(row, seed)`` keys with replacement from ``weights``, sharded across ranks.

    The draws come in blocks of ``num_samples * world_size`` keys, block ``b`` from a generator
    seeded by ``(seed, b)``; rank ``r`` keeps keys ``r, r + world_size, ...`` of each block, so
    the shards are disjoint, equally long, and the union is independent of the number of workers.
    One epoch iterates one block. ``len()`` is the nominal epoch length ``num_samples``.

    Resuming: ``start_block`` and ``skip`` say where the run stopped (block, keys of this rank's
    shard already drawn). The first epoch iterates ``start_block`` from key ``skip`` on; Lightning
    counts the batches already done in that epoch, so its epoch still ends after ``num_samples``
    keys in all and every later epoch is a whole block. Lightning's epoch number is not the block
    number (a checkpoint written after ``fit`` stopped mid-epoch counts that epoch as complete),
    so the first epoch announced by :meth:`set_epoch` is anchored to ``start_block`` and later
    ones follow it: epoch ``e`` iterates block ``start_block + e - first`` (blocks count the
    epochs asked of this sampler; a fresh one should first be set to epoch 0, as Lightning
    does). The first iteration may start before any :meth:`set_epoch` call (DataLoader workers
    prefetch when the iterator is created); it iterates ``start_block``. Iterating the same
    epoch again gives the same keys.
    """

    def __init__(
        self,
        weights: np.ndarray,
        num_samples: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        start_block: int = 0,
        skip: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.weights = np.asarray(weights, dtype=np.float64)
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        if not 0 <= skip <= num_samples:
            raise ValueError(f"skip {skip} outside 0..{num_samples}")
        self.start_block = start_block
        self.skip = skip
        self.epoch = 0
        self._first_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch`` (the first epoch set is anchored to ``start_block``)."""
        if self._first_epoch is None:
            self._first_epoch = epoch
        self.epoch = epoch

    def position(self) -> tuple[int, int]:
        """``(block, skip)`` the next iteration draws: the block and the keys skipped in it."""
        if self._first_epoch is None or self.epoch == self._first_epoch:
            return self.start_block, self.skip
        return self.start_block + self.epoch - self._first_epoch, 0

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        block, skip = self.position()
        rng = np.random.default_rng([self.seed, block])
        total = self.num_samples * self.world_size
        rows = rng.choice(len(self.weights), size=total, p=self.weights)
        seeds = rng.integers(0, 2**31 - 1, size=total)
        for i in range(self.rank + skip * self.world_size, total, self.world_size):
            yield int(rows[i]), int(seeds[i])

    def digest(self) -> str:
        """SHA-256 (12 hex digits) of the keys the next iteration draws: identifies this rank's
        shard in logs (two ranks of one run log different digests)."""
        text = ";".join(f"{row}:{seed}" for row, seed in self)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


class ShardSampler(Sampler[int]):
    """Rows ``rank, rank + world_size, ...`` of ``0..n-1``: a deterministic validation shard
    without padding (metrics are summed across ranks, so uneven shards count correctly)."""

    def __init__(self, n: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.n = n
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

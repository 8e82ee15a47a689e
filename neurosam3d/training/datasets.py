"""Crop datasets and samplers: balanced, seeded, sharded per DDP rank.

A training item is keyed by ``(row, seed)``: the sampler draws manifest rows with the balanced
weights and a per-sample seed, so the crop position and the augmentation of every sample are
reproducible and independent of which worker or rank produces it. Validation items are keyed by
row and are deterministic (crop centred on the target's bounding box, no augmentation).

Each item is a dict with ``image`` ``1 x S x S x S`` float32 (normalised intensities), ``target``
``1 x S x S x S`` float32 (0/1) and ``row`` (int64), ``S`` the crop size in voxels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from neurosam3d.training.augment import apply_augmentation, build_augmentation
from neurosam3d.training.crops import (
    RegionSpec,
    bbox_centre,
    crop_start,
    cut,
    load_region,
    random_foreground_voxel,
)
from neurosam3d.training.samples import SampleTable


class CropDataset(Dataset):
    """Crops of ``crop_size``^3 voxels from the rows of ``table``.

    ``train=True``: keys are ``(row, seed)``, the crop is centred on a random target voxel and
    augmented; ``train=False``: keys are rows, the crop is centred on the bounding box.
    """

    def __init__(
        self,
        table: SampleTable,
        crop_size: int,
        *,
        train: bool,
        ct_window: tuple[float, float] = (-1000.0, 1000.0),
        cache_dir: str | Path | None = None,
        augment: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.table = table
        self.crop_size = crop_size
        self.train = train
        self.ct_window = ct_window
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.transform = build_augmentation(augment) if train else None

    def __len__(self) -> int:
        return len(self.table)

    def spec(self, row: int) -> RegionSpec:
        """The region (files, bbox, preprocessing) of manifest row ``row``."""
        t = self.table
        return RegionSpec(
            image_path=Path(t.root) / str(t.image_path[row]),
            mask_path=Path(t.root) / str(t.mask_path[row]),
            mask_sha256=str(t.mask_sha256[row]),
            modality=str(t.modality[row]),
            bbox_min=tuple(int(x) for x in t.bbox_min[row]),  # type: ignore[arg-type]
            bbox_max=tuple(int(x) for x in t.bbox_max[row]),  # type: ignore[arg-type]
            crop_size=self.crop_size,
            ct_window=self.ct_window,
        )

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        row, seed = (key, 0) if isinstance(key, int | np.integer) else key
        region = load_region(self.spec(int(row)), self.cache_dir)
        if self.train:
            rng = np.random.default_rng(seed)
            centre = random_foreground_voxel(region, rng)
        else:
            centre = bbox_centre(self.table.bbox_min[row], self.table.bbox_max[row])
        image, mask = cut(region, crop_start(centre, self.crop_size), self.crop_size)
        if self.transform is not None:
            image, mask = apply_augmentation(self.transform, image, mask, seed)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "target": torch.from_numpy(np.ascontiguousarray(mask > 0, dtype=np.float32))[None],
            "row": torch.tensor(int(row)),
        }


class BalancedSampler(Sampler[tuple[int, int]]):
    """Draws ``(row, seed)`` keys with replacement from ``weights``, sharded across ranks.

    Every epoch all ranks draw the same ``num_samples * world_size`` keys from a generator seeded
    by ``(seed, epoch)`` and rank ``r`` keeps keys ``r, r + world_size, ...``: the shards are
    disjoint, equally long, and the union is independent of the number of workers.
    Lightning calls :meth:`set_epoch` at the start of each epoch. ``skip`` drops the first keys of
    this rank's shard in the first iteration only: a run resumed mid-epoch continues with the
    keys it had not yet seen instead of repeating the epoch's start.
    """

    def __init__(
        self,
        weights: np.ndarray,
        num_samples: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        skip: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.weights = np.asarray(weights, dtype=np.float64)
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.num_samples * self.world_size
        rows = rng.choice(len(self.weights), size=total, p=self.weights)
        seeds = rng.integers(0, 2**31 - 1, size=total)
        start = self.rank + self.skip * self.world_size
        self.skip = 0
        for i in range(start, total, self.world_size):
            yield int(rows[i]), int(seeds[i])


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

"""Benchmark: training samples per second, our data module vs a seed-style torchio chain.

Both read the same manifest (the shipped nnU-Net sample, two real CTs with 61 and 41 classes,
prepared by ``neurosam3d prepare`` into a temporary folder) and draw the same (row, seed) keys from the
balanced sampler; both produce a 64^3 image crop and its binary target with a random flip.

The reference (below, as the seed's dataset did it per sample): read image and mask with
SimpleITK, build a ``tio.Subject``, clamp CT to [-1000, 1000], ``ToCanonical``,
``CropOrPad(mask_name="label")`` to the crop size, ``RandomFlip``, ``ZNormalization`` on the
crop (voxels > 0), paths held in Python lists.

Ours: :class:`neurosam3d.training.datasets.CropDataset` with its region cache (decoded,
normalised regions memory-mapped from ``.npy``), in the steady state after one pass has filled
the cache, and cold (an empty cache, i.e. the first epoch) for reference.

    python benchmarks/dataloader.py [--samples 60] [--workers 0]

The last line is one JSON object; ``dataloader_speedup`` is warm ours / reference samples/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "nnUNet_raw" / "Dataset001_TotalSegCT"
CROP = 64
FLIP = {"name": "RandomFlip", "axes": [0, 1, 2], "flip_probability": 0.5}


class SeedStyleDataset(Dataset):
    """The seed's per-sample torchio chain over paths kept in Python lists."""

    def __init__(self, root: Path, images: list[str], masks: list[str], crop: int) -> None:
        import torchio as tio

        self.images = [str(root / p) for p in images]
        self.masks = [str(root / p) for p in masks]
        self.transform = tio.Compose(
            [
                tio.ToCanonical(),
                tio.CropOrPad(mask_name="label", target_shape=(crop, crop, crop)),
                tio.RandomFlip(axes=(0, 1, 2)),
            ]
        )
        self.norm = tio.ZNormalization(masking_method=lambda x: x > 0)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        import SimpleITK as sitk
        import torchio as tio

        row, seed = key
        torch.manual_seed(seed)
        subject = tio.Subject(
            image=tio.ScalarImage.from_sitk(sitk.ReadImage(self.images[row])),
            label=tio.LabelMap.from_sitk(sitk.ReadImage(self.masks[row])),
        )
        subject = tio.Clamp(-1000, 1000, include=["image"])(subject)
        subject = self.norm(self.transform(subject))
        return {"image": subject.image.data.float(), "target": subject.label.data.float()}


def _rate(dataset: Dataset, keys: list[tuple[int, int]], workers: int) -> float:
    """Samples per second of a DataLoader over ``keys`` (batch 2)."""
    loader = DataLoader(dataset, batch_size=2, sampler=keys, num_workers=workers)  # type: ignore[arg-type]
    start = time.perf_counter()
    count = sum(batch["image"].shape[0] for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    import argparse

    from neurosam3d.training.datasets import BalancedSampler, CropDataset
    from neurosam3d.training.samples import (
        SampleFilter,
        SampleTable,
        read_manifests,
        sampling_weights,
    )

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-dataloader-") as tmp:
        root = Path(tmp) / "tree"
        prepare = [str(Path(sys.executable).parent / "neurosam3d"), "prepare", "--layout", "nnunet"]
        subprocess.run([*prepare, "--root", str(SAMPLE), "--out", str(root)], check=True)
        manifest = root / "manifest.parquet"
        table = SampleTable.from_table(read_manifests([manifest], SampleFilter()), root)
        keys = list(BalancedSampler(sampling_weights(table), args.samples, args.seed))
        ours = CropDataset(table, CROP, train=True, cache_dir=Path(tmp) / "cache", augment=[FLIP])
        cold = _rate(ours, keys, args.workers)
        warm = _rate(ours, keys, args.workers)
        seed = SeedStyleDataset(root, table.image_path.tolist(), table.mask_path.tolist(), CROP)
        reference = _rate(seed, keys, args.workers)
    print(
        f"{os.cpu_count()}-core CPU, {args.samples} samples, {args.workers} workers, "
        f"{len(table)} manifest rows: reference {reference:.1f}/s | ours cold {cold:.1f}/s, "
        f"warm {warm:.1f}/s | speedup warm {warm / reference:.2f}x, cold {cold / reference:.2f}x",
        flush=True,
    )
    print(
        json.dumps(
            {
                "dataloader_speedup": round(warm / reference, 2),
                "cold_speedup": round(cold / reference, 2),
                "reference_samples_per_s": round(reference, 2),
                "ours_warm_samples_per_s": round(warm, 2),
                "ours_cold_samples_per_s": round(cold, 2),
                "workers": args.workers,
                "samples": args.samples,
                "manifest_rows": len(table),
            }
        )
    )


if __name__ == "__main__":
    main()

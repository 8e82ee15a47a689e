"""Benchmark: training samples per second from the training store, cold, vs the seed and a floor.

Data: ``--tree DIR`` (a label tree prepared by ``neurosam3d prepare``; its store is built first if
it has none), or by default the full-size set built in a temporary folder: the shipped CT
``samples/nnUNet_raw/Dataset001_TotalSegCT`` ``s0001`` (61 TotalSegmentator classes, pseudo
ground truth) upsampled 4x4x2 to 0.75 x 0.75 x 1.5 mm (488 x 404 x 224 int16, trilinear; label
nearest), as 4 cases of a raw nnU-Net dataset, prepared with ``neurosam3d prepare`` defaults
(which writes the store).

All three read the same balanced ``(row, seed)`` draws (``BalancedSampler``), crops of ``--crop``
voxels (default 128), batch 2, ``--workers`` DataLoader workers:

- **ours, cold**: :class:`neurosam3d.training.datasets.CropDataset` (crop read from the store,
  normalised with the stored statistics, target cut from the label volume, torchio RandomFlip),
  first pass with the page cache dropped (``/proc/sys/vm/drop_caches``; the output says when that
  was not allowed);
- **seed-style reference**: per sample, read image and mask ``.nii.gz`` with SimpleITK, torchio
  Clamp, ``ToCanonical``, ``CropOrPad`` around the target (``mask_name``), ``RandomFlip``,
  ``ZNormalization`` on voxels > 0 (the seed's dataset); on the first ``min(--samples, 8)`` draws
  (it is slow; the ratio is of samples per second);
- **crop floor**: the same crops read from an uncompressed memory-mapped ``.npy`` copy of each
  image (written beforehand, page cache dropped too) and normalised with the same statistics.

    python benchmarks/dataloader.py [--tree DIR] [--crop 128] [--samples 40] [--workers 0]

The last line is one JSON object: ``cold_samples_per_s``, ``cold_vs_seed``,
``cold_vs_crop_floor``, ``store_bytes_vs_label_tree`` (store entries and tables over label-tree
images and masks, bytes), plus the raw rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "nnUNet_raw" / "Dataset001_TotalSegCT"
FLIP = {"name": "RandomFlip", "axes": [0, 1, 2], "flip_probability": 0.5}
UPSAMPLE = (4, 4, 2)
CASES = 4
SEED_SAMPLES = 8


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


class CropFloor(Dataset):
    """The same crops as ``ours`` from uncompressed memory-mapped ``.npy`` images, normalised."""

    def __init__(self, ours: object, npy: dict[str, Path]) -> None:
        self.ours = ours
        self.npy = npy

    def __len__(self) -> int:
        return len(self.ours.table)  # type: ignore[attr-defined]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        from neurosam3d.training.crops import padded_crop
        from neurosam3d.transforms.intensity import apply_intensity

        row, seed = key
        ours = self.ours
        size = ours.crop_size  # type: ignore[attr-defined]
        start = ours.crop_origin(row, seed)  # type: ignore[attr-defined]
        stats = ours.store.stats(row)  # type: ignore[attr-defined]
        volume = np.load(self.npy[str(ours.table.image_path[row])], mmap_mode="r")  # type: ignore[attr-defined]
        raw, inside = padded_crop(volume, start, size, 0, volume.dtype)
        image = np.full((size,) * 3, stats.background, dtype=np.float32)
        if inside is not None:
            image[inside] = apply_intensity(raw[inside], stats)
        return {"image": torch.from_numpy(image)[None]}


def drop_page_cache() -> bool:
    """Drop the page cache (needs root); False when not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _rate(dataset: Dataset, keys: list[tuple[int, int]], workers: int) -> float:
    """Samples per second of a DataLoader over ``keys`` (batch 2)."""
    loader = DataLoader(dataset, batch_size=2, sampler=keys, num_workers=workers)  # type: ignore[arg-type]
    start = time.perf_counter()
    count = sum(batch["image"].shape[0] for batch in loader)
    return count / (time.perf_counter() - start)


def build_full_size(tmp: Path) -> Path:
    """The full-size raw nnU-Net dataset (4 upsampled copies of the sample CT) under ``tmp``."""
    import nibabel as nib
    from scipy import ndimage

    from neurosam3d.io.atomic import atomic_write_bytes
    from neurosam3d.io.nifti import make_image, nifti_bytes

    raw = tmp / "raw" / "Dataset001_TotalSegCT"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    shutil.copyfile(SAMPLE / "dataset.json", raw / "dataset.json")
    image = nib.load(SAMPLE / "imagesTr" / "s0001_0000.nii.gz")
    label = nib.load(SAMPLE / "labelsTr" / "s0001.nii.gz")
    data = np.asarray(image.dataobj, dtype=np.float32)
    up = ndimage.zoom(data, UPSAMPLE, order=1, grid_mode=True, mode="nearest")
    up = np.round(up).astype(np.int16)
    seg = np.asarray(label.dataobj)
    for axis, k in enumerate(UPSAMPLE):
        seg = np.repeat(seg, k, axis=axis)
    affine = image.affine.copy()
    affine[:3, :3] = affine[:3, :3] / np.array(UPSAMPLE)
    image_bytes = nifti_bytes(make_image(up, affine))
    label_bytes = nifti_bytes(make_image(seg.astype(np.uint8), affine))
    for case in range(1, CASES + 1):
        atomic_write_bytes(raw / "imagesTr" / f"s{case:04d}_0000.nii.gz", image_bytes)
        atomic_write_bytes(raw / "labelsTr" / f"s{case:04d}.nii.gz", label_bytes)
    print(f"full-size set: {CASES} cases of {up.shape} int16, spacing 0.75x0.75x1.5 mm", flush=True)
    return raw


def _bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def main() -> None:
    from neurosam3d.data.config import config_for_layout
    from neurosam3d.data.prepare import prepare_dataset
    from neurosam3d.io.nifti import load_nifti
    from neurosam3d.store.build import build_store
    from neurosam3d.training.datasets import BalancedSampler, CropDataset
    from neurosam3d.training.samples import (
        SampleFilter,
        SampleTable,
        read_manifests,
        sampling_weights,
    )

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", type=Path, help="a prepared label tree (default: full-size set)")
    parser.add_argument("--crop", type=int, default=128, help="crop edge in voxels")
    parser.add_argument("--samples", type=int, default=40, help="draws for ours and the floor")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-dataloader-") as tmp_name:
        tmp = Path(tmp_name)
        if args.tree is None:
            root = tmp / "tree"
            started = time.perf_counter()
            prepare_dataset(config_for_layout("nnunet", build_full_size(tmp)), root, workers=2)
            print(f"prepare (tree + store): {time.perf_counter() - started:.1f} s", flush=True)
        else:
            root = args.tree.resolve()
            if not (root / "store.parquet").is_file():
                build_store(root, workers=2)
        table = SampleTable.from_table(
            read_manifests([root / "manifest.parquet"], SampleFilter()), root
        )
        keys = list(BalancedSampler(sampling_weights(table), args.samples, args.seed))
        store_files = [*root.glob("*/store*/*/*"), root / "store.parquet"]
        store_files += list((root / "manifests").glob("*_store.parquet"))
        tree_files = [*root.glob("*/images*/*.nii.gz"), *root.glob("*/labels*/*/*.nii.gz")]
        store_ratio = _bytes(store_files) / _bytes(tree_files)

        ours = CropDataset(table, args.crop, train=True, augment=[FLIP])
        npy: dict[str, Path] = {}
        for path in sorted(set(table.image_path.tolist())):
            npy[path] = tmp / "floor" / f"{len(npy)}.npy"
            npy[path].parent.mkdir(exist_ok=True)
            np.save(npy[path], np.asanyarray(load_nifti(root / path).dataobj))
        dropped = drop_page_cache()
        cold = _rate(ours, keys, args.workers)
        drop_page_cache()
        floor = _rate(CropFloor(ours, npy), keys, args.workers)
        seed_keys = keys[:SEED_SAMPLES]
        seed_set = SeedStyleDataset(
            root, table.image_path.tolist(), table.mask_path.tolist(), args.crop
        )
        drop_page_cache()
        reference = _rate(seed_set, seed_keys, args.workers)
        shape = table.shape[0].tolist()
    cache = "page cache dropped before each" if dropped else "page cache NOT dropped (not allowed)"
    print(
        f"{os.cpu_count()}-core CPU, {len(table)} manifest rows, {len(set(table.case_id.tolist()))} "
        f"cases of {shape}, crop {args.crop}^3, batch 2, {args.workers} workers; {cache}\n"
        f"| path | samples | samples/s |\n|---|---|---|\n"
        f"| ours, cold (store crops + flip) | {len(keys)} | {cold:.2f} |\n"
        f"| seed-style reference (SimpleITK + torchio) | {len(seed_keys)} | {reference:.3f} |\n"
        f"| crop floor (uncompressed memmap + normalise) | {len(keys)} | {floor:.2f} |\n"
        f"store bytes / label-tree bytes: {store_ratio:.3f}",
        flush=True,
    )
    print(
        json.dumps(
            {
                "cold_samples_per_s": round(cold, 2),
                "cold_vs_seed": round(cold / reference, 1),
                "cold_vs_crop_floor": round(cold / floor, 3),
                "store_bytes_vs_label_tree": round(store_ratio, 3),
                "seed_samples_per_s": round(reference, 3),
                "crop_floor_samples_per_s": round(floor, 2),
                "page_cache_dropped": dropped,
                "crop": args.crop,
                "samples": args.samples,
                "workers": args.workers,
                "manifest_rows": len(table),
            }
        )
    )


if __name__ == "__main__":
    main()

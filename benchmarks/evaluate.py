"""Benchmark: the ``full`` evaluation protocol on a full-size volume, ours vs a fair reference.

Data (default): the full-size CT set, built in a temporary folder: the shipped CT
``samples/nnUNet_raw/Dataset001_TotalSegCT`` case ``s0001`` (122 x 101 x 112 at 3 mm, 61
TotalSegmentator classes: pseudo ground truth) upsampled to 0.75 x 0.75 x 1.5 mm
(488 x 404 x 224 = 44 M voxels; image linear, labels nearest) and prepared with
``neurosam3d prepare`` (nnU-Net layout); targets ``--classes`` (default liver, 1.35 M voxels,
and left adrenal gland, 6.8 k). ``--tree DIR --manifest FILE`` evaluates any prepared data instead.

Model: the ``--config`` architecture (default ``small``, 128^3 windows) with random weights
(``torch.manual_seed(0)``), CPU, ``--threads`` 1. Random weights predict blobs that fill each
window and reach its faces, so the growth only stops at ``--max-windows``: the default, 4, keeps
the run to the laid windows plus a few grown ones (the liver's tiling is 3 x 3 x 1 = 9 laid
windows; a window a click lands in is always predicted, beyond the cap). A trained model's
windows follow its target instead. 10 clicks (``--clicks``), ``random_error`` rule, seed 0.

Both sides run the same protocol with the same model, seed and click rule: the same windows
(laid over the target, then seeded and grown from the stitched prediction by
:class:`~neurosam3d.windows.growth.GrowingWindows`), the same clicks, each window encoded
once, as upstream SAM-Med3D encodes its crop once, and the same image (stored voxels,
normalised per crop, :func:`~neurosam3d.evaluation.api.normalised_image`). They differ in what
a click costs besides the model:

* **ours** (``neurosam3d.evaluation.protocol.run_full``): the stitched prediction is mapped back
  onto the original grid only inside the windows' footprint, and scored there with
  :class:`~neurosam3d.evaluation.metrics.ReferenceScorer` (the reference's surface computed once);
* **reference** (below): every click the stitched prediction is pasted into a whole-volume
  float32 array on the original grid (``box_to_original``), thresholded, and scored against the
  whole reference with MONAI (``DiceMetric``, ``compute_surface_dice``), as evaluation scripts
  built on MONAI do.

Scores of both are compared click by click (``max_abs_score_diff``). ``peak_rss_mb`` is ours
alone, in a fresh process: ``VmHWM`` of a child running only our protocol on the same targets,
masks read one target at a time (``ru_maxrss`` would report the parent's size: Linux carries it
over through fork and exec).

Usage: ``python benchmarks/evaluate.py [--config small] [--clicks 10] [--threads 1]
[--max-windows 4] [--classes liver,adrenal_gland_left] [--tree DIR --manifest FILE]
[--device cpu]``. The last line printed is one JSON object with ``eval_speedup`` (ours /
reference targets per second), ``peak_rss_mb`` and ``seconds_per_click`` (ours).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from neurosam3d.evaluation.api import normalised_image
from neurosam3d.evaluation.protocol import ProtocolConfig, _working_bbox, run_full, target_seed
from neurosam3d.prompts import NOT_A_POINT, get_click_rule
from neurosam3d.transforms.geometry import box_to_original, grid_for_image, sample_box
from neurosam3d.windows.growth import GrowingWindows
from neurosam3d.windows.tiling import plan_windows, union_box

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "samples" / "nnUNet_raw" / "Dataset001_TotalSegCT"
ZOOM = (4.0, 4.0, 2.0)  # 3 mm -> 0.75 x 0.75 x 1.5 mm


def build_full_size_set(folder: Path) -> Path:
    """The upsampled s0001 as an nnU-Net raw dataset under ``folder``, prepared; its manifest."""
    from scipy import ndimage

    from neurosam3d.data.config import config_for_layout
    from neurosam3d.data.prepare import prepare_dataset
    from neurosam3d.io.nifti import make_image, save_nifti

    raw = folder / "Dataset901_TotalSegCTFull"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    doc = json.loads((SOURCE / "dataset.json").read_text())
    doc.update(numTraining=1, name="TotalSegCTFull")
    (raw / "dataset.json").write_text(json.dumps(doc, indent=1))
    image = nib.load(SOURCE / "imagesTr" / "s0001_0000.nii.gz")
    labels = nib.load(SOURCE / "labelsTr" / "s0001.nii.gz")
    affine = image.affine.copy()
    affine[:3, :3] = affine[:3, :3] / np.asarray(ZOOM)
    # voxel centres of the fine grid: corner-aligned with the coarse one
    affine[:3, 3] = image.affine[:3, 3] + image.affine[:3, :3] @ (0.5 / np.asarray(ZOOM) - 0.5)
    volume = ndimage.zoom(
        np.asarray(image.dataobj, np.float32), ZOOM, order=1, grid_mode=True, mode="nearest"
    )
    save_nifti(
        make_image(np.round(volume).astype(np.int16), affine, like=image),
        raw / "imagesTr" / "s0001_0000.nii.gz",
    )
    del volume
    label_map = ndimage.zoom(
        np.asarray(labels.dataobj), ZOOM, order=0, grid_mode=True, mode="nearest"
    )
    save_nifti(
        make_image(label_map.astype(np.uint8), affine, like=labels),
        raw / "labelsTr" / "s0001.nii.gz",
    )
    del label_map
    out = folder / "prepared"
    prepare_dataset(config_for_layout("nnunet", raw), out, workers=1)
    return out / "manifest.parquet"


def load_targets(tree: Path, manifest: Path, classes: list[str] | None, model):
    """(image as the protocol reads it, grid, shape, [(name, mask loader)]) of the first case.

    The image is what ``neurosam3d evaluate`` reads (:func:`normalised_image`: the stored int16
    voxels, normalised per crop); masks are read one target at a time, as there.
    """
    import pandas as pd

    from neurosam3d.io.paths import safe_join

    rows = pd.read_parquet(manifest).sort_values(["dataset", "split", "case_id", "class_name"])
    if classes:
        rows = rows[rows["class_name"].isin(classes)]
    rows = rows[rows["case_id"] == rows["case_id"].iloc[0]]
    first = rows.iloc[0]
    image = nib.load(safe_join(tree, first["image_path"]))
    volume = normalised_image(image, first["modality"], model)
    grid = grid_for_image(image)

    def loader(path: Path):
        return lambda: np.asarray(nib.load(path).dataobj) > 0

    targets = [
        (f"{row.case_id}/{row.class_name}", loader(safe_join(tree, row.mask_path)))
        for row in rows.itertuples(index=False)
    ]
    return volume, grid, image.shape, targets


def monai_scores(prediction: np.ndarray, reference: np.ndarray, spacing, tolerance_mm: float):
    """Dice and NSD of one click with MONAI, on the whole volume."""
    from monai.metrics import DiceMetric, compute_surface_dice

    pred = torch.from_numpy(prediction)[None, None].float()
    ref = torch.from_numpy(reference)[None, None].float()
    dice = DiceMetric(include_background=True, reduction="none")(pred, ref)
    nsd = compute_surface_dice(
        pred, ref, [tolerance_mm], include_background=True, spacing=list(spacing)
    )
    return float(dice), float(nsd)


def reference_target(model, image, reference, grid, config, generator):
    """The ``full`` protocol written plainly, scored on the whole volume: (Dice, NSD) per click."""
    size = int(model.img_size)
    lo, hi = _working_bbox(reference, grid)
    windows = GrowingWindows(
        model,
        image,
        grid,
        background=float(image.min()),
        overlap=config.overlap,
        threshold=config.threshold,
        max_windows=config.max_windows,
    )
    windows.lay(plan_windows(lo, hi, size, overlap=config.overlap))
    rule = get_click_rule(config.click_rule)
    scores = []
    current = None
    current_full = np.zeros(0, np.float32)  # whole-volume probabilities after the last click
    for _ in range(config.clicks):
        region = union_box([*windows.laid, *windows.predicted], grid.shape)
        target = torch.from_numpy(sample_box(reference, grid, region, order=1) >= 0.5)[None]
        if windows.region is not None:  # the current prediction, sampled from the whole volume
            current = torch.from_numpy(sample_box(current_full, grid, region, order=0) > 0.5)[None]
        step = rule(target, current, generator=generator)
        point = step.coords[0, 0].numpy().astype(np.float64) + np.asarray(region.start)
        label = int(step.labels[0, 0])
        if label != NOT_A_POINT:
            windows.predict(windows.click(point, label))
        windows.propagate()
        current_full = box_to_original(windows.probabilities(), grid, windows.region)
        prediction = current_full > config.threshold
        scores.append(
            monai_scores(prediction, reference, grid.original_spacing, config.nsd_tolerance_mm)
        )
    return scores


def _setup(args):
    """The seeded model, the volume, its grid and shape, the targets and the protocol config."""
    from neurosam3d.model import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.config).eval().to(args.device)
    volume, grid, shape, targets = load_targets(
        Path(args.tree), Path(args.manifest), args.class_list, model
    )
    config = ProtocolConfig(clicks=args.clicks, max_windows=args.max_windows)
    return model, volume, grid, shape, targets, config


def _ours_only(args) -> None:
    """Child process: our protocol alone on the targets (for peak RSS)."""
    model, volume, grid, _, targets, config = _setup(args)
    with torch.inference_mode():
        for name, load in targets:
            generator = torch.Generator().manual_seed(target_seed(0, name))
            run_full(model, volume, load(), grid, config, generator, background=float(volume.min()))
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``), in MiB.

    Not ``ru_maxrss``: Linux carries that over from the parent through fork and exec, so a
    child started by a large parent reports the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: best effort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="model configuration (build_model name)")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-windows",
        type=int,
        default=4,
        help="most windows a target grows into by seeding (default 4: random weights fill "
        "every window, so growth only stops at the cap)",
    )
    parser.add_argument("--classes", default="liver,adrenal_gland_left", help="'' for all rows")
    parser.add_argument("--tree", help="label-tree root of --manifest (default: build the set)")
    parser.add_argument("--manifest", help="prepared manifest (default: build the set)")
    parser.add_argument("--ours-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.class_list = [c for c in args.classes.split(",") if c]
    if args.ours_only:
        _ours_only(args)
        return
    logging.basicConfig(level=logging.WARNING)
    scratch = None
    if args.manifest is None:
        scratch = Path(tempfile.mkdtemp(prefix="neurosam3d-bench-eval-"))
        started = time.perf_counter()
        args.manifest = str(build_full_size_set(scratch))
        args.tree = str(Path(args.manifest).parent)
        print(f"built the full-size CT set in {time.perf_counter() - started:.0f} s")
    elif args.tree is None:
        args.tree = str(Path(args.manifest).parent)
    try:
        run(args)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run(args) -> None:
    model, volume, grid, shape, targets, config = _setup(args)
    background = float(volume.min())
    print(
        f"volume {tuple(shape)} ({int(np.prod(shape)) / 1e6:.1f} M voxels), {len(targets)} targets"
    )
    ours_s = ref_s = 0.0
    max_diff = 0.0
    with torch.inference_mode():
        for name, load in targets:
            mask = load()
            start = time.perf_counter()
            ours = run_full(
                model,
                volume,
                mask,
                grid,
                config,
                torch.Generator().manual_seed(target_seed(0, name)),
                background=background,
            )
            mid = time.perf_counter()
            ref = reference_target(
                model,
                volume,
                mask,
                grid,
                config,
                torch.Generator().manual_seed(target_seed(0, name)),
            )
            ours_t, ref_t = mid - start, time.perf_counter() - mid
            ours_s += ours_t
            ref_s += ref_t
            diff = max(
                max(abs(a.scores.dice - d), abs(a.scores.nsd - n))
                for a, (d, n) in zip(ours.clicks, ref, strict=True)
            )
            max_diff = max(max_diff, diff)
            print(
                f"{name:32s} {int(mask.sum()):>9d} voxels  windows {ours.final.windows_predicted:2d} "
                f"(seeded clicks {ours.final.seeded_clicks:2d})  Dice {ours.final.scores.dice:.3f}  "
                f"ours {ours_t:6.1f} s  reference {ref_t:6.1f} s  max |d score| {diff:.1e}"
            )
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--ours-only",
            "--config",
            args.config,
            "--clicks",
            str(args.clicks),
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--max-windows",
            str(args.max_windows),
            "--classes",
            args.classes,
            "--tree",
            args.tree,
            "--manifest",
            args.manifest,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    result = {
        "config": args.config,
        "clicks": args.clicks,
        "targets": len(targets),
        "voxels": int(np.prod(shape)),
        "threads": args.threads,
        "device": args.device,
        "max_windows": args.max_windows,
        "ours_targets_per_s": len(targets) / ours_s,
        "reference_targets_per_s": len(targets) / ref_s,
        "eval_speedup": ref_s / ours_s,
        "peak_rss_mb": peak,
        "seconds_per_click": ours_s / (len(targets) * args.clicks),
        "max_abs_score_diff": max_diff,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

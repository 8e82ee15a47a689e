"""Benchmark: interactive evaluation, ours (embedding once per window) vs re-encoding per click.

Both run the same protocol on the same targets with the same model, seed and click rule
(``neurosam3d.evaluation.protocol``): the same windows, the same clicks and the same mapping back
onto the original grid. The reference, written plainly below, works the way SAM-Med3D's scripts
do per window: at every click it cuts the window's crop again and runs the image encoder on it
before decoding, and it scores each click with MONAI (``DiceMetric``-style counts and
``compute_surface_dice``, the standard implementation). Ours (``run_target``) encodes each window
once, when its first click arrives, runs only prompt encoder and decoder per click, and scores
with :class:`~neurosam3d.evaluation.metrics.ReferenceScorer`. An ablation (``--scorer ours``)
gives the reference our scorer, so that re-encoding is the only difference
(``encode_once_speedup``). Scores of both are compared click by click.

Data: the shipped CT ``samples/totalsegmentator/s0002`` (CT angiography, 120x126x164 at 1.5 mm,
LPS; TotalSegmentator pseudo ground truth), its non-empty masks. Model: a named configuration
with random weights (speed does not depend on the weights), on CPU.

Usage: ``python benchmarks/evaluate.py [--config small] [--clicks 10] [--threads 2] [--repeats 3]
[--scorer monai|ours]``. The last line printed is a JSON object with ``eval_speedup`` (reference
time / our time; ``encode_once_speedup`` with ``--scorer ours``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_surface_dice

from neurosam3d.evaluation.geometry import GridMap, box_to_original, grid_for_image, sample_box
from neurosam3d.evaluation.metrics import score_masks
from neurosam3d.evaluation.protocol import ProtocolConfig, run_target, target_seed
from neurosam3d.evaluation.windows import Stitcher, plan_windows, union_box
from neurosam3d.io.nifti import load_nifti
from neurosam3d.model import build_model
from neurosam3d.prompts import NOT_A_POINT, get_click_rule
from neurosam3d.training.intensity import normalise_intensity

CASE = Path(__file__).resolve().parents[1] / "samples" / "totalsegmentator" / "s0002"


def monai_scores(
    prediction: np.ndarray, reference: np.ndarray, spacing, tolerance_mm: float
) -> tuple[float, float]:
    """Dice and NSD of one click with MONAI, the straightforward way (whole volumes)."""
    pred = torch.from_numpy(prediction)[None, None].float()
    ref = torch.from_numpy(reference)[None, None].float()
    total = float(pred.sum() + ref.sum())
    dice = 2.0 * float((pred * ref).sum()) / total
    nsd = compute_surface_dice(
        pred, ref, [tolerance_mm], include_background=True, spacing=list(spacing)
    )
    return dice, float(nsd)


def ours_scores(
    prediction: np.ndarray, reference: np.ndarray, spacing, tolerance_mm: float
) -> tuple[float, float]:
    """Dice and NSD of one click with our scorer (a fresh one per click: no caching across clicks)."""
    scores = score_masks(prediction, reference, spacing, tolerance_mm)
    return scores.dice, scores.nsd


SCORERS = {"monai": monai_scores, "ours": ours_scores}


def reference_target(
    model: torch.nn.Module,
    image: np.ndarray,
    reference: np.ndarray,
    grid: GridMap,
    config: ProtocolConfig,
    generator: torch.Generator,
    scorer=monai_scores,
) -> list[tuple[float, float]]:
    """The protocol written plainly, re-encoding a window's crop at every click; (Dice, NSD) per click."""
    size = model.img_size
    background = float(image.min())
    idx = np.argwhere(reference)
    corners = grid.to_working(np.array([idx.min(axis=0), idx.max(axis=0)], dtype=np.float64))
    lo, hi = np.floor(corners.min(axis=0)), np.floor(corners.max(axis=0)) + 1
    windows = plan_windows(lo, hi, size, overlap=config.overlap)
    region = union_box(windows, grid.shape)
    target = torch.from_numpy(sample_box(reference, grid, region, order=1) >= 0.5)[None]
    clicks: dict = {w: ([], []) for w in windows}
    logits: dict = {}
    stitcher = Stitcher(region)
    rule = get_click_rule(config.click_rule)
    probs_region = None
    scores = []
    for _ in range(config.clicks):
        current = None if probs_region is None else torch.from_numpy(probs_region)[None]
        step = rule(target, current, generator=generator, threshold=config.threshold)
        point = step.coords[0, 0].numpy().astype(np.float64) + np.asarray(region.start)
        label = int(step.labels[0, 0])
        for window in windows:
            if label == NOT_A_POINT or not window.contains(point):
                continue
            points, labels = clicks[window]
            points.append(point - np.asarray(window.start))
            labels.append(label)
            crop = torch.from_numpy(sample_box(image, grid, window, order=1, cval=background))
            embedding = model.image_encoder(crop[None, None])  # again, at every click
            low, _ = model.predict_masks(
                embedding,
                torch.from_numpy(np.stack(points).astype(np.float32))[None],
                torch.tensor([labels]),
                mask_input=logits.get(window),
            )
            logits[window] = low
            probs = torch.sigmoid(model.upscale_logits(low, size))[0, 0].numpy()
            stitcher.set(window, probs)
        probs_region = stitcher.probabilities()
        prediction = box_to_original(probs_region, grid, region) > config.threshold
        scores.append(scorer(prediction, reference, grid.original_spacing, config.nsd_tolerance_mm))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="model configuration (build_model name)")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N per target and method")
    parser.add_argument(
        "--scorer", choices=sorted(SCORERS), default="monai", help="the reference's scorer"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.config).eval()
    image = load_nifti(CASE / "ct.nii.gz")
    volume = normalise_intensity(np.asarray(image.dataobj), "CT")
    grid = grid_for_image(image)
    config = ProtocolConfig(clicks=args.clicks)
    targets = []
    for path in sorted((CASE / "segmentations").glob("*.nii.gz")):
        mask = np.asarray(load_nifti(path).dataobj) > 0
        if mask.any():
            targets.append((path.name.removesuffix(".nii.gz"), mask))

    def generator(name: str) -> torch.Generator:
        return torch.Generator().manual_seed(target_seed(0, "s0002", name))

    with torch.inference_mode():
        run_target(model, volume, targets[0][1], grid, config, generator(targets[0][0]))  # warm-up
        ours_s = ref_s = 0.0
        max_diff = 0.0
        for name, mask in targets:
            # Alternate the two methods and keep each one's best time: load from other
            # processes then affects both alike.
            ours_t, ref_t = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                ours = run_target(model, volume, mask, grid, config, generator(name))
                mid = time.perf_counter()
                ref = reference_target(
                    model, volume, mask, grid, config, generator(name), SCORERS[args.scorer]
                )
                ours_t.append(mid - start)
                ref_t.append(time.perf_counter() - mid)
            ours_s += min(ours_t)
            ref_s += min(ref_t)
            diff = max(
                max(abs(a.scores.dice - d), abs(a.scores.nsd - n))
                for a, (d, n) in zip(ours.clicks, ref, strict=True)
            )
            max_diff = max(max_diff, diff)
            print(
                f"{name:32s} windows {ours.final.windows}  ours {min(ours_t):6.2f} s  "
                f"reference {min(ref_t):6.2f} s  max |d score| {diff:.2e}"
            )
    result = {
        "config": args.config,
        "clicks": args.clicks,
        "targets": len(targets),
        "threads": args.threads,
        "reference_scorer": args.scorer,
        "repeats": args.repeats,
        "ours_targets_per_s": len(targets) / ours_s,
        "reference_targets_per_s": len(targets) / ref_s,
        ("eval_speedup" if args.scorer == "monai" else "encode_once_speedup"): ref_s / ours_s,
        "max_abs_score_diff": max_diff,
    }
    print(
        f"ours {result['ours_targets_per_s']:.3f} targets/s, reference {result['reference_targets_per_s']:.3f} targets/s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

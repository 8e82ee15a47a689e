"""Benchmark: the ``slice2d`` protocol with each 2-D model, ours vs a fair reference, next to the
3-D ``full`` protocol, on a full-size volume.

Data (default): the full-size CT set of ``benchmarks/evaluate.py`` (``build_full_size_set``: the
shipped CT ``s0001`` upsampled to 0.75 x 0.75 x 1.5 mm, 488 x 404 x 224 = 44 M voxels, prepared
with ``neurosam3d prepare``, built in a temporary folder), targets ``--classes``.
``--tree DIR --manifest FILE`` evaluates any prepared data instead.

Models (random weights, real sizes): ``--models`` (default ``sam_med2d_vit_b,sam_vit_b``) for
``slice2d``, ``--config`` (default ``small``, as ``benchmarks/evaluate.py``) for ``full``.

* **ours** (:func:`neurosam3d.evaluation.slice2d.run_slice2d`): the case is reoriented once,
  each slice's embedding is computed once per case (:class:`~neurosam3d.evaluation.slice2d.
  SliceEmbeddings`, shared by the case's targets), the prompted slices are decoded in batches and
  the stacked prediction is mapped back and scored inside the target's slab only;
* **reference** (below): the seed's slice loop (SAM-Med3D ``validation.py``,
  ``finetune_model_predict2D``) with this protocol's steps: per target, every prompted slice
  encoded, then every round each slice decoded on its own; the stacked prediction pasted into a
  whole-volume array on the original grid (``box_to_original``) and scored on the whole volume
  with MONAI (``DiceMetric``, ``compute_surface_dice``). Its clicks are drawn as ours (one call of
  the rule per round on the batch of slices), so both score the same clicks;
* **full**: :func:`~neurosam3d.evaluation.protocol.run_full` with the 3-D model on the same
  targets (ours only; its own reference is ``benchmarks/evaluate.py``).

Usage: ``python benchmarks/evaluate_slice2d.py [--models sam_med2d_vit_b,sam_vit_b] [--config
small] [--clicks 10] [--threads 1] [--classes liver,adrenal_gland_left] [--tree DIR --manifest
FILE] [--device cpu] [--no-full]``. The last line printed is one JSON object with
``slice2d_targets_per_s`` (ours, per 2-D model), ``slice2d_reference_targets_per_s``,
``slice2d_speedup`` (ours / reference targets per second, per model), ``full_targets_per_s``
and ``max_abs_score_diff`` (ours vs reference, over every click).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from neurosam3d.evaluation.protocol import SLICE2D, ProtocolConfig, run_full, target_seed
from neurosam3d.evaluation.slice2d import (
    SliceEmbeddings,
    SliceVolume,
    run_slice2d,
    slice_pixels,
    working_volume,
)
from neurosam3d.prompts import get_click_rule
from neurosam3d.transforms.geometry import Box, box_to_original, sample_box

HERE = Path(__file__).resolve().parent


def _full_benchmark():
    """``benchmarks/evaluate.py`` as a module: its data set builder, loader and MONAI scores."""
    spec = importlib.util.spec_from_file_location("_evaluate_benchmark", HERE / "evaluate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_target(model, volume: SliceVolume, reference, config, generator, monai_scores):
    """The ``slice2d`` protocol written as the seed's loop: (Dice, NSD) per click."""
    from neurosam3d.model.sam2d import Predictor2D

    grid = volume.grid
    full_box = Box((0, 0, 0), grid.shape)
    ras_reference = sample_box(reference, grid, full_box, order=0) > 0.5
    slices = np.flatnonzero(ras_reference.any(axis=(0, 1)))
    h, w = grid.shape[:2]
    predictor = Predictor2D(model, device=next(model.parameters()).device)
    embeddings = []
    for k in slices:
        predictor.set_image(torch.from_numpy(slice_pixels(volume.data[:, :, k])))
        embeddings.append(predictor.embedding)
    targets = torch.from_numpy(np.ascontiguousarray(np.moveaxis(ras_reference[:, :, slices], 2, 0)))
    rule = get_click_rule(config.click_rule)
    points = torch.zeros(len(slices), 0, 2)
    labels = torch.zeros(len(slices), 0, dtype=torch.long)
    logits: list[torch.Tensor | None] = [None] * len(slices)
    current = None
    scores = []
    for click in range(config.clicks):
        step = rule(targets[:, None], current, generator=generator)
        points = torch.cat([points, step.coords[:, :, [2, 1]].float()], dim=1)
        labels = torch.cat([labels, step.labels.long()], dim=1)
        prediction = np.zeros(grid.shape, np.float32)
        for i, k in enumerate(slices):
            predictor.set_embedding(embeddings[i], (h, w))
            out = predictor.predict(
                points[i : i + 1], labels[i : i + 1], mask_input=logits[i], multimask=click == 0
            )
            best = int(out.iou[0].argmax()) if click == 0 else 0
            logits[i] = out.low_res_logits[:, best : best + 1]
            prediction[:, :, k] = out.probabilities[0, best].cpu().numpy()
        current = torch.from_numpy(np.moveaxis(prediction[:, :, slices], 2, 0) > 0.5)[:, None]
        on_original = box_to_original(prediction, grid, full_box) > config.threshold
        scores.append(
            monai_scores(on_original, reference, grid.original_spacing, config.nsd_tolerance_mm)
        )
    return scores


def run(args, bench) -> None:
    import pandas as pd

    from neurosam3d.io.paths import safe_join
    from neurosam3d.model import build_model

    torch.set_num_threads(args.threads)
    volume3d, grid3d, shape, targets = bench.load_targets(
        Path(args.tree), Path(args.manifest), args.class_list
    )
    rows = pd.read_parquet(args.manifest).sort_values(["dataset", "split", "case_id"])
    if args.class_list:  # the case load_targets reads: the first with a selected class
        rows = rows[rows["class_name"].isin(args.class_list)]
    image = nib.load(safe_join(Path(args.tree), rows.iloc[0]["image_path"]))
    print(
        f"volume {tuple(shape)} ({int(np.prod(shape)) / 1e6:.1f} M voxels), {len(targets)} "
        f"targets, {args.clicks} clicks"
    )
    config = ProtocolConfig(clicks=args.clicks, protocol=SLICE2D)
    result: dict = {
        "clicks": args.clicks,
        "targets": len(targets),
        "voxels": int(np.prod(shape)),
        "threads": args.threads,
        "device": args.device,
        "slice2d_targets_per_s": {},
        "slice2d_reference_targets_per_s": {},
        "slice2d_speedup": {},
        "slices": {},
    }
    max_diff = 0.0
    with torch.inference_mode():
        start = time.perf_counter()
        volume = working_volume(image)
        reorient_s = time.perf_counter() - start
        for name in args.model_list:
            torch.manual_seed(0)
            model = build_model(name).eval().to(args.device)
            shared = SliceEmbeddings(model, volume)
            ours_s, ref_s = reorient_s, 0.0
            for target, mask in targets:
                start = time.perf_counter()
                ours = run_slice2d(
                    model,
                    volume,
                    mask,
                    config,
                    torch.Generator().manual_seed(target_seed(0, target)),
                    embeddings=shared,
                )
                mid = time.perf_counter()
                ref = reference_target(
                    model,
                    volume,
                    mask,
                    config,
                    torch.Generator().manual_seed(target_seed(0, target)),
                    bench.monai_scores,
                )
                ours_t, ref_t = mid - start, time.perf_counter() - mid
                ours_s, ref_s = ours_s + ours_t, ref_s + ref_t
                diff = max(
                    max(abs(a.scores.dice - d), abs(a.scores.nsd - n))
                    for a, (d, n) in zip(ours.clicks, ref, strict=True)
                )
                max_diff = max(max_diff, diff)
                result["slices"][target] = ours.final.windows
                print(
                    f"{name:16s} {target:32s} {ours.final.windows:4d} slices  Dice "
                    f"{ours.final.scores.dice:.3f}  ours {ours_t:7.1f} s  reference {ref_t:7.1f} s"
                    f"  max |d score| {diff:.1e}",
                    flush=True,
                )
            result["slice2d_targets_per_s"][name] = len(targets) / ours_s
            result["slice2d_reference_targets_per_s"][name] = len(targets) / ref_s
            result["slice2d_speedup"][name] = ref_s / ours_s
            del model, shared
        if args.full:
            torch.manual_seed(0)
            model = build_model(args.config).eval().to(args.device)
            full = ProtocolConfig(clicks=args.clicks)
            full_s = 0.0
            background = float(volume3d.min())
            for target, mask in targets:
                start = time.perf_counter()
                out = run_full(
                    model,
                    volume3d,
                    mask,
                    grid3d,
                    full,
                    torch.Generator().manual_seed(target_seed(0, target)),
                    background=background,
                )
                took = time.perf_counter() - start
                full_s += took
                print(
                    f"full {args.config:11s} {target:32s} {out.final.windows_predicted:4d} windows"
                    f"  Dice {out.final.scores.dice:.3f}  ours {took:7.1f} s",
                    flush=True,
                )
            result["full_config"] = args.config
            result["full_targets_per_s"] = len(targets) / full_s
    result["max_abs_score_diff"] = max_diff
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sam_med2d_vit_b,sam_vit_b", help="2-D models")
    parser.add_argument("--config", default="small", help="3-D model of the full protocol")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", default="liver,adrenal_gland_left", help="'' for all rows")
    parser.add_argument("--tree", help="label-tree root of --manifest (default: build the set)")
    parser.add_argument("--manifest", help="prepared manifest (default: build the set)")
    parser.add_argument("--no-full", dest="full", action="store_false", help="skip the 3-D run")
    args = parser.parse_args()
    args.class_list = [c for c in args.classes.split(",") if c]
    args.model_list = [m for m in args.models.split(",") if m]
    logging.basicConfig(level=logging.WARNING)
    bench = _full_benchmark()
    scratch = None
    if args.manifest is None:
        scratch = Path(tempfile.mkdtemp(prefix="neurosam3d-bench-slice2d-"))
        started = time.perf_counter()
        args.manifest = str(bench.build_full_size_set(scratch))
        args.tree = str(Path(args.manifest).parent)
        print(f"built the full-size CT set in {time.perf_counter() - started:.0f} s")
    elif args.tree is None:
        args.tree = str(Path(args.manifest).parent)
    try:
        run(args, bench)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: the evaluation protocols on a full-size volume, ours vs a fair reference each.

One timing loop runs, on the same targets, the ``slice2d`` protocol with each 2-D model of
``--slice2d-models`` and the 3-D ``full`` protocol with ``--config``; every (protocol, model)
runs ours and its reference side by side, target by target, and the ratio is printed.

Data (default): the full-size CT set, built in a temporary folder: the shipped CT
``samples/nnUNet_raw/Dataset001_TotalSegCT`` case ``s0001`` (122 x 101 x 112 at 3 mm, 61
TotalSegmentator classes: pseudo ground truth) upsampled to 0.75 x 0.75 x 1.5 mm
(488 x 404 x 224 = 44 M voxels; image linear, labels nearest) and prepared with
``neurosam3d prepare`` (nnU-Net layout); targets ``--classes`` (default liver, 1.35 M voxels,
and left adrenal gland, 6.8 k). ``--tree DIR --manifest FILE`` evaluates any prepared data instead.

Models: random weights at real sizes (``torch.manual_seed(0)`` before each build), CPU,
``--threads`` 1, 10 clicks (``--clicks``), ``random_error`` rule, seed 0.

**``full``** (``--config``, default ``small``, 128^3 windows; ``--no-full`` skips it). Random
weights predict blobs that fill each window and reach its faces, so the growth only stops at
``--max-windows``: the default, 4, keeps the run to the laid windows plus a few grown ones (the
liver's tiling is 3 x 3 x 1 = 9 laid windows; a window a click lands in is always predicted,
beyond the cap). A trained model's windows follow its target instead. Both sides run the same
windows (laid over the target, then seeded and grown from the stitched prediction by
:class:`~neurosam3d.windows.growth.GrowingWindows`), the same clicks, each window encoded
once, as upstream SAM-Med3D encodes its crop once, and the same image (stored voxels,
normalised per crop, :func:`~neurosam3d.evaluation.api.normalised_image`). They differ in what
a click costs besides the model:

* **ours** (``neurosam3d.evaluation.protocol.run_full``): the stitched prediction is mapped back
  onto the original grid only inside the windows' footprint, and scored there with
  :class:`~neurosam3d.evaluation.metrics.ReferenceScorer` (the reference's surface computed once);
* **reference** (:func:`reference_full`): every click the stitched prediction is pasted into a
  whole-volume float32 array on the original grid (``box_to_original``), thresholded, and scored
  against the whole reference with MONAI (``DiceMetric``, ``compute_surface_dice``), as
  evaluation scripts built on MONAI do.

**``slice2d``** (``--slice2d-models``, default ``sam_vit_b,sam_med2d_vit_b``; ``''`` skips it):

* **ours** (:func:`neurosam3d.evaluation.slice2d.run_slice2d`): the case is reoriented once
  (timed, charged to ours), each slice's embedding is computed once per case
  (:class:`~neurosam3d.evaluation.slice2d.SliceEmbeddings`, shared by the case's targets), the
  prompted slices are decoded in batches and the stacked prediction is mapped back and scored
  inside the target's slab only;
* **reference** (:func:`reference_slice2d`): the seed's slice loop (SAM-Med3D ``validation.py``,
  ``finetune_model_predict2D``) with this protocol's steps: per target, every prompted slice
  encoded, then every round each slice decoded on its own; the stacked prediction pasted into a
  whole-volume array on the original grid (``box_to_original``) and scored on the whole volume
  with MONAI. Its clicks are drawn as ours (one call of the rule per round on the batch of
  slices), so both score the same clicks.

Scores of ours and the reference are compared click by click (``max_abs_score_diff``, over all
protocols). ``peak_rss_mb`` is ``full``'s ours alone, in a fresh process: ``VmHWM`` of a child
running only our ``full`` protocol on the same targets, masks read one target at a time
(``ru_maxrss`` would report the parent's size: Linux carries it over through fork and exec).

Usage: ``python benchmarks/evaluate.py [--slice2d-models sam_vit_b,sam_med2d_vit_b]
[--config small] [--no-full] [--clicks 10] [--threads 1] [--max-windows 4]
[--classes liver,adrenal_gland_left] [--tree DIR --manifest FILE] [--device cpu]``. The last
line printed is one JSON object with ``targets_per_s``, ``reference_targets_per_s`` and
``speedup`` (ours / reference targets per second), each ``{protocol: {model: value}}``
(``{"full": {"small": ...}, "slice2d": {"sam_vit_b": ..., "sam_med2d_vit_b": ...}}``), ``slices``
(prompted slices per target), ``max_abs_score_diff`` and, when ``full`` ran, ``eval_speedup``
(its speedup), ``peak_rss_mb`` and ``seconds_per_click`` (its ours).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from neurosam3d.evaluation.api import normalised_image
from neurosam3d.evaluation.protocol import (
    SLICE2D,
    ProtocolConfig,
    TargetResult,
    _working_bbox,
    run_full,
    target_seed,
)
from neurosam3d.evaluation.slice2d import (
    SliceEmbeddings,
    SliceVolume,
    run_slice2d,
    slice_pixels,
    working_volume,
)
from neurosam3d.prompts import NOT_A_POINT, get_click_rule
from neurosam3d.transforms.geometry import Box, box_to_original, grid_for_image, sample_box
from neurosam3d.windows.growth import GrowingWindows
from neurosam3d.windows.tiling import plan_windows, union_box

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "samples" / "nnUNet_raw" / "Dataset001_TotalSegCT"
ZOOM = (4.0, 4.0, 2.0)  # 3 mm -> 0.75 x 0.75 x 1.5 mm

#: (Dice, NSD) of each click of one target
Scores = list[tuple[float, float]]
#: a target's mask (bool, original grid) and click generator -> ours' result
OursFn = Callable[[np.ndarray, torch.Generator], TargetResult]
#: the same -> the reference's scores
ReferenceFn = Callable[[np.ndarray, torch.Generator], Scores]


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


@dataclass(frozen=True)
class Case:
    """The first case of the selection: its image, modality and ``(name, mask loader)`` targets.

    Masks are read one target at a time, as ``neurosam3d evaluate`` does.
    """

    image: nib.Nifti1Image
    modality: str
    targets: list[tuple[str, Callable[[], np.ndarray]]]


def load_case(tree: Path, manifest: Path, classes: list[str] | None) -> Case:
    """The first case of ``manifest`` (with a class of ``classes``, if given) and its targets."""
    import pandas as pd

    from neurosam3d.io.paths import safe_join

    rows = pd.read_parquet(manifest).sort_values(["dataset", "split", "case_id", "class_name"])
    if classes:
        rows = rows[rows["class_name"].isin(classes)]
    rows = rows[rows["case_id"] == rows["case_id"].iloc[0]]
    first = rows.iloc[0]

    def loader(path: Path) -> Callable[[], np.ndarray]:
        return lambda: np.asarray(nib.load(path).dataobj) > 0

    targets = [
        (f"{row.case_id}/{row.class_name}", loader(safe_join(tree, row.mask_path)))
        for row in rows.itertuples(index=False)
    ]
    return Case(nib.load(safe_join(tree, first["image_path"])), first["modality"], targets)


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


def reference_full(model, image, reference, grid, config, generator) -> Scores:
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


def reference_slice2d(model, volume: SliceVolume, reference, config, generator) -> Scores:
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


def _seeded_model(name: str, device: str) -> torch.nn.Module:
    from neurosam3d.model import build_model

    torch.manual_seed(0)
    return build_model(name).eval().to(device)


def _full_protocol(args, case: Case):
    """``full``: the model, ours and the reference on the case's normalised image."""
    model = _seeded_model(args.config, args.device)
    volume = normalised_image(case.image, case.modality, model)
    grid = grid_for_image(case.image)
    config = ProtocolConfig(clicks=args.clicks, max_windows=args.max_windows)
    background = float(volume.min())

    def ours(mask: np.ndarray, generator: torch.Generator) -> TargetResult:
        return run_full(model, volume, mask, grid, config, generator, background=background)

    def reference(mask: np.ndarray, generator: torch.Generator) -> Scores:
        return reference_full(model, volume, mask, grid, config, generator)

    return ours, reference


@dataclass(frozen=True)
class Run:
    """One (protocol, model) of the timing loop; ``setup_s`` is charged to ours."""

    protocol: str
    model: str
    ours: OursFn
    reference: ReferenceFn
    setup_s: float = 0.0


def protocol_runs(args, case: Case) -> Iterator[Run]:
    """The runs of the loop, one model alive at a time: each 2-D model, then ``full``."""
    if args.slice2d_list:
        start = time.perf_counter()
        volume = working_volume(case.image)
        reorient_s = time.perf_counter() - start
        config = ProtocolConfig(clicks=args.clicks, protocol=SLICE2D)
        for name in args.slice2d_list:
            model = _seeded_model(name, args.device)
            shared = SliceEmbeddings(model, volume)

            def ours(mask, generator, model=model, shared=shared) -> TargetResult:
                return run_slice2d(model, volume, mask, config, generator, embeddings=shared)

            def reference(mask, generator, model=model) -> Scores:
                return reference_slice2d(model, volume, mask, config, generator)

            yield Run(SLICE2D, name, ours, reference, reorient_s)
            del model, shared, ours, reference
    if args.full:
        ours, reference = _full_protocol(args, case)
        yield Run("full", args.config, ours, reference)


def _ours_only(args) -> None:
    """Child process: our ``full`` protocol alone on the targets (for peak RSS)."""
    torch.set_num_threads(args.threads)
    case = load_case(Path(args.tree), Path(args.manifest), args.class_list)
    ours, _ = _full_protocol(args, case)
    with torch.inference_mode():
        for name, load in case.targets:
            ours(load(), torch.Generator().manual_seed(target_seed(0, name)))
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


def _peak_rss_child(args) -> float:
    """``peak_rss_mb`` of a fresh process running our ``full`` protocol alone."""
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
    return json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--slice2d-models",
        default="sam_vit_b,sam_med2d_vit_b",
        help="2-D models of the slice2d protocol, comma-separated ('' skips slice2d)",
    )
    parser.add_argument("--config", default="small", help="3-D model of the full protocol")
    parser.add_argument("--no-full", dest="full", action="store_false", help="skip full")
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
    args.slice2d_list = [m for m in args.slice2d_models.split(",") if m]
    if args.ours_only:
        _ours_only(args)
        return
    if not args.slice2d_list and not args.full:
        parser.error("nothing to run: give --slice2d-models or drop --no-full")
    logging.basicConfig(level=logging.WARNING)
    scratch = None
    if args.manifest is None:
        scratch = Path(tempfile.mkdtemp(prefix="neurosam3d-bench-eval-"))
        started = time.perf_counter()
        args.manifest = str(build_full_size_set(scratch))
        args.tree = str(Path(args.manifest).parent)
        print(f"built the full-size CT set in {time.perf_counter() - started:.0f} s", flush=True)
    elif args.tree is None:
        args.tree = str(Path(args.manifest).parent)
    try:
        run(args)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _max_diff(ours: TargetResult, reference: Scores) -> float:
    """Largest |ours - reference| of Dice and NSD over the clicks."""
    return max(
        max(abs(a.scores.dice - d), abs(a.scores.nsd - n))
        for a, (d, n) in zip(ours.clicks, reference, strict=True)
    )


def run(args) -> None:
    torch.set_num_threads(args.threads)
    case = load_case(Path(args.tree), Path(args.manifest), args.class_list)
    shape = case.image.shape
    n = len(case.targets)
    print(
        f"volume {tuple(shape)} ({int(np.prod(shape)) / 1e6:.1f} M voxels), {n} targets, "
        f"{args.clicks} clicks",
        flush=True,
    )
    per_s: dict[str, dict[str, float]] = {}
    ref_per_s: dict[str, dict[str, float]] = {}
    speedup: dict[str, dict[str, float]] = {}
    slices: dict[str, int] = {}
    seconds: dict[tuple[str, str], float] = {}
    max_diff = 0.0
    with torch.inference_mode():
        for entry in protocol_runs(args, case):
            ours_s, ref_s = entry.setup_s, 0.0
            for name, load in case.targets:
                mask = load()
                start = time.perf_counter()
                ours = entry.ours(mask, torch.Generator().manual_seed(target_seed(0, name)))
                mid = time.perf_counter()
                ref = entry.reference(mask, torch.Generator().manual_seed(target_seed(0, name)))
                ours_t, ref_t = mid - start, time.perf_counter() - mid
                ours_s, ref_s = ours_s + ours_t, ref_s + ref_t
                diff = _max_diff(ours, ref)
                max_diff = max(max_diff, diff)
                final = ours.final
                if entry.protocol == SLICE2D:
                    slices[name] = final.windows
                    where = f"{final.windows:4d} slices"
                else:
                    where = f"{final.windows_predicted:4d} windows (seeded {final.seeded_clicks})"
                print(
                    f"{entry.protocol:8s} {entry.model:16s} {name:28s} {int(mask.sum()):>9d} voxels"
                    f"  {where}  Dice {final.scores.dice:.3f}  ours {ours_t:7.1f} s  reference "
                    f"{ref_t:7.1f} s  ratio {ref_t / ours_t:5.2f}x  max |d score| {diff:.1e}",
                    flush=True,
                )
            seconds[(entry.protocol, entry.model)] = ours_s
            per_s.setdefault(entry.protocol, {})[entry.model] = n / ours_s
            ref_per_s.setdefault(entry.protocol, {})[entry.model] = n / ref_s
            speedup.setdefault(entry.protocol, {})[entry.model] = ref_s / ours_s
            setup = f" (ours includes {entry.setup_s:.1f} s of setup)" if entry.setup_s else ""
            print(
                f"{entry.protocol} {entry.model}: ours {n / ours_s:.5f} targets/s, reference "
                f"{n / ref_s:.5f} targets/s, speedup {ref_s / ours_s:.2f}x{setup}",
                flush=True,
            )
    result: dict = {
        "clicks": args.clicks,
        "targets": n,
        "voxels": int(np.prod(shape)),
        "threads": args.threads,
        "device": args.device,
        "targets_per_s": per_s,
        "reference_targets_per_s": ref_per_s,
        "speedup": speedup,
        "slices": slices,
        "max_abs_score_diff": max_diff,
    }
    if args.full:
        result.update(
            config=args.config,
            max_windows=args.max_windows,
            eval_speedup=speedup["full"][args.config],
            peak_rss_mb=_peak_rss_child(args),
            seconds_per_click=seconds[("full", args.config)] / (n * args.clicks),
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmark: one interactive training step, ours vs a straightforward seed-style reference.

A step is: encode the crop, 11 simulated-click steps (one random step without a new click),
Dice + CE per step, backward, AdamW. Both variants use the same weights, the same real CT crop
(the shared TotalSegmentator example, centred on the liver) and the same optimiser.

The reference (below, written plainly as the seed did it):
- the padded windowed-attention encoder (``reference_encoder`` of ``benchmarks/encoder.py``);
- the batch z-normalised as a whole inside the step;
- clicks from logits thresholded at 0.5 (not probabilities), one ``argwhere`` + random pick per
  item over the full volume, error region of the upsampled logits;
- the previous logits fed back without detaching (the graph spans all 11 steps);
- MONAI ``DiceCELoss(sigmoid=True, squared_pred=True)``.

Ours: ``neurosam3d.training.interaction.run_interaction`` (fast exact encoder, batched clicks
from probabilities, detached mask feedback) with the same optimiser settings.

    python benchmarks/train_step.py                        # tiny and sam_med3d, batch 1, CPU
    python benchmarks/train_step.py --configs tiny --batch 2
    python benchmarks/train_step.py --configs sam_med3d --device cuda --dtype bf16 --batch 4

Each variant runs in a fresh subprocess; peak memory is its VmHWM (CPU) or
``torch.cuda.max_memory_allocated`` (GPU) minus that of a baseline process that only builds the
model, optimiser and batch. A batch that does not fit fails its worker with the error shown. Threads: 1 per process by default
(this CPU is shared; OpenMP spin-waiting makes multi-threaded timings meaningless there).
The last line is one JSON object; ``train_step_speedup`` is the full configuration's ratio.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder import reference_encoder  # the padded reference encoder (benchmarks/encoder.py)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalsegmentator-examples"
LIVER = 5
NUM_CLICKS = 11
VARIANTS = ("baseline", "reference", "ours")


def reference_clicks(
    logits: torch.Tensor, target: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed-style sampler: ``logits > 0.5`` as the prediction, one random error voxel per item."""
    pred = logits > 0.5
    ref = target > 0.5
    points, labels = [], []
    for b in range(target.shape[0]):
        fn = ref[b, 0] & ~pred[b, 0]
        err = fn | (pred[b, 0] & ~ref[b, 0])
        idx = torch.argwhere(err)
        if len(idx) == 0:
            idx = torch.argwhere(ref[b, 0])
        pick = idx[int(torch.randint(len(idx), (1,), generator=gen))]
        points.append(pick.float()[None])
        labels.append(fn[tuple(pick)].long().view(1))
    return torch.stack(points), torch.stack(labels)


def reference_step(model, optimiser, loss_fn, image, target, gen, refine: int) -> float:
    image = (image - image.mean()) / image.std()  # the seed normalised the whole batch at once
    embedding = reference_encoder(model.image_encoder, image)
    size = target.shape[-3:]
    logits = torch.zeros_like(target)
    low = F.interpolate(logits, size=model.low_res_size, mode="trilinear")
    coords, labels = [], []
    loss = image.new_zeros(())
    for step in range(NUM_CLICKS):
        if step != refine:
            c, lab = reference_clicks(logits, target, gen)
            coords.append(c)
            labels.append(lab)
        low, _ = model.predict_masks(
            embedding, torch.cat(coords, 1), torch.cat(labels, 1), mask_input=low
        )
        logits = F.interpolate(low, size=size, mode="trilinear", align_corners=False)
        loss = loss + loss_fn(logits, target)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return float(loss)


def ours_step(model, optimiser, image, target, gen, refine: int) -> float:
    from neurosam3d.prompts import get_click_rule
    from neurosam3d.training.interaction import run_interaction

    out = run_interaction(
        model,
        image,
        target,
        num_clicks=NUM_CLICKS,
        rule=get_click_rule("random_error"),
        generator=gen,
        refine_step=refine,
    )
    optimiser.zero_grad()
    out.loss.backward()
    optimiser.step()
    return float(out.loss.detach())


def real_batch(size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` copies of a ``size``^3 crop of the shared CT centred on the liver (CT-normalised
    per volume, as our data module does) and the liver mask."""
    from neurosam3d.io.nifti import load_nifti
    from neurosam3d.training.crops import padded_crop
    from neurosam3d.transforms.intensity import normalise_intensity

    image = np.asanyarray(load_nifti(SHARED / "example_ct.nii.gz").dataobj)
    seg = np.asanyarray(load_nifti(SHARED / "example_seg_fast_force_split.nii.gz").dataobj)
    norm = normalise_intensity(image, "CT")
    centre = np.argwhere(seg == LIVER).mean(0).round().astype(np.int64)
    img, _ = padded_crop(norm, centre - size // 2, size, float(norm.min()), np.float32)
    mask, _ = padded_crop((seg == LIVER).astype(np.uint8), centre - size // 2, size, 0, np.uint8)
    image_t = torch.from_numpy(img)[None, None].repeat(batch, 1, 1, 1, 1)
    target_t = torch.from_numpy(mask.astype(np.float32))[None, None].repeat(batch, 1, 1, 1, 1)
    return image_t, target_t


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _worker(args) -> dict[str, object]:
    import statistics
    import time

    from neurosam3d.model import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = build_model(args.config).to(device).train()
    optimiser = torch.optim.AdamW(
        [
            {"params": list(model.image_encoder.parameters()), "lr": 8e-4},
            {
                "params": [*model.prompt_encoder.parameters(), *model.mask_decoder.parameters()],
                "lr": 8e-5,
            },
        ],
        weight_decay=0.1,
    )
    image, target = (t.to(device) for t in real_batch(model.img_size, args.batch))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    result: dict[str, object] = {"variant": args.worker}
    if args.worker == "baseline":
        result["peak_bytes"] = _peak_bytes(device)
        return result
    if args.worker == "reference":
        from monai.losses import DiceCELoss

        loss_fn = DiceCELoss(sigmoid=True, squared_pred=True, reduction="mean")
    times, losses = [], []
    for i in range(args.warmup + args.repeats):
        refine = int(
            torch.randint(
                1, NUM_CLICKS, (1,), generator=torch.Generator().manual_seed(args.seed + i)
            )
        )
        _sync(device)
        start = time.perf_counter()
        with autocast:
            if args.worker == "ours":
                gen = torch.Generator(device).manual_seed(args.seed + i)
                losses.append(ours_step(model, optimiser, image, target, gen, refine))
            else:
                gen = torch.Generator().manual_seed(args.seed + i)
                losses.append(reference_step(model, optimiser, loss_fn, image, target, gen, refine))
        _sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    result.update(peak_bytes=_peak_bytes(device), step_s=statistics.median(times), losses=losses)
    return result


def _run(variant: str, config: str, args) -> dict[str, object]:
    import subprocess

    cmd = [
        sys.executable, __file__, "--worker", variant, "--configs", config,
        "--batch", str(args.batch), "--repeats", str(args.repeats[config]),
        "--device", args.device, "--dtype", args.dtype,
        "--warmup", str(args.warmup[config]), "--seed", str(args.seed), "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant}/{config} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="tiny,sam_med3d", help="model configurations")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", default="tiny=3,sam_med3d=1", help="timed steps per config")
    parser.add_argument("--warmup", default="tiny=1,sam_med3d=0", help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="bf16: autocast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.config = args.configs
        args.repeats = int(args.repeats)
        args.warmup = int(args.warmup)
        print(json.dumps(_worker(args)))
        return
    repeats = dict(item.split("=") for item in args.repeats.split(","))
    warmup = dict(item.split("=") for item in args.warmup.split(","))
    args.repeats = {c: int(repeats.get(c, 1)) for c in args.configs.split(",")}
    args.warmup = {c: int(warmup.get(c, 0)) for c in args.configs.split(",")}
    device_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{os.cpu_count()}-core CPU, {args.threads} thread(s)"
    )
    rows = {}
    for config in args.configs.split(","):
        res = {v: _run(v, config, args) for v in VARIANTS}
        base = res["baseline"]["peak_bytes"]
        row = {
            "reference_step_s": round(res["reference"]["step_s"], 3),
            "ours_step_s": round(res["ours"]["step_s"], 3),
            "speedup": round(res["reference"]["step_s"] / res["ours"]["step_s"], 2),
            "reference_peak_mib": round((res["reference"]["peak_bytes"] - base) / 2**20, 1),
            "ours_peak_mib": round((res["ours"]["peak_bytes"] - base) / 2**20, 1),
        }
        rows[config] = row
        print(
            f"{device_name}, {args.dtype}, {config} batch {args.batch}: "
            f"reference {row['reference_step_s']} s {row['reference_peak_mib']} MiB | ours "
            f"{row['ours_step_s']} s {row['ours_peak_mib']} MiB | speedup {row['speedup']}x",
            flush=True,
        )
    headline = rows.get("sam_med3d") or next(iter(rows.values()))
    summary = {
        "train_step_speedup": headline["speedup"],
        "device": device_name,
        "dtype": args.dtype,
    }
    print(json.dumps({**summary, "batch": args.batch, "runs": rows}))


if __name__ == "__main__":
    main()

"""Benchmark: our SAM ViT-B image encoder (SDPA, bias as mask) vs the official segment-anything.

The reference is the official ``segment-anything`` 1.0 ``ImageEncoderViT`` (a dev dependency;
its modules are loaded without the package ``__init__``, which would import torchvision), with
the same weights (copied into ours). One 1024 x 1024 image, batch 1, fp32 on CPU by default.
The two encoders alternate ``--repeats`` times so that load from other processes hits both
alike; the median wall seconds and their ratio are reported, with max|ours - official| of the
embedding. The last line is one JSON object.

    python benchmarks/sam2d_encoder.py                  # CPU, 2 repeats
    python benchmarks/sam2d_encoder.py --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from neurosam3d.model import build_model


def official_build_sam() -> types.ModuleType:
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or spec.origin is None:
        raise SystemExit("segment-anything is not installed (make install installs the dev extra)")
    parent = types.ModuleType("_segment_anything_reference")
    parent.__path__ = [str(Path(spec.origin).parent)]
    sys.modules.setdefault("_segment_anything_reference", parent)
    return importlib.import_module("_segment_anything_reference.build_sam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    official = official_build_sam().build_sam_vit_b(checkpoint=None).image_encoder
    ours = build_model("sam_vit_b").image_encoder
    ours.load_state_dict(official.state_dict())
    ours, official = ours.to(device).eval(), official.to(device).eval()
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1)).to(device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    times: dict[str, list[float]] = {"ours": [], "official": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, encoder in (("ours", ours), ("official", official)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with (
                torch.inference_mode(),
                torch.autocast(
                    device.type, dtype=dtype or torch.float32, enabled=dtype is not None
                ),
            ):
                outputs[name] = encoder(image).float()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            print(f"{name:9s} {times[name][-1]:.2f} s", flush=True)
    ours_s, ref_s = statistics.median(times["ours"]), statistics.median(times["official"])
    diff = float((outputs["ours"] - outputs["official"]).abs().max())
    print(f"median: ours {ours_s:.2f} s, official {ref_s:.2f} s, speedup {ref_s / ours_s:.2f}x")
    result = {
        "sam_encoder_speedup": round(ref_s / ours_s, 3),
        "ours_s": round(ours_s, 3),
        "official_s": round(ref_s, 3),
        "max_abs_diff": diff,
        "device": args.device,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

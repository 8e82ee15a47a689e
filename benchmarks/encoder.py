"""Benchmark: the fast exact image encoder vs a straightforward reference.

``--config sam_med3d`` (default): the reference is the released model's windowed attention
written plainly: pad the token grid after ``norm1`` to whole windows, attend over every padded
token with the full decomposed relative-position bias, crop. ``--config dinov2_vitl3d`` (the
3DINO ViT-L at 112^3): the reference is 3DINO's own attention with xFormers off (its default
without xFormers): ``softmax(q k^T * scale) v`` materialised, against our fused SDPA. Both use
the same weights as ours (the same module's parameters).

    python benchmarks/encoder.py                                   # CPU, fp32, batch 1
    python benchmarks/encoder.py --threads 1                       # steadier on a busy machine
    python benchmarks/encoder.py --device cuda --dtype fp32,bf16 --batch 1,8
    python benchmarks/encoder.py --config dinov2_vitl3d            # the seed's 3DINO encoder

Peak memory: one fresh subprocess per variant running one forward, its VmHWM minus that of a
baseline process that only builds the weights and the input (CPU), or
torch.cuda.max_memory_allocated (GPU). Timing: one more subprocess alternating the two variants
(median wall and CPU seconds), so that load from other processes hits both alike; it also
measures max|ours - reference| and one click (prompt encoder + decoder, embedding cached). The
last line is one JSON object (the first configuration's figures plus all runs).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from neurosam3d.model.dino_encoder import DinoAttention, DinoBlock3D, DinoImageEncoder3D
from neurosam3d.model.image_encoder import Attention3D, Block3D, ImageEncoderViT3D


def _rel_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    idx = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[idx.long()]


def reference_attention(attn: Attention3D, x: torch.Tensor) -> torch.Tensor:
    """Plain attention over all tokens of ``x`` (``B x D x H x W x C``, padding included)."""
    b, d, h, w, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, d * h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, d * h * w, -1).unbind(0)
    scale = q.shape[-1] ** -0.5
    logits = (q * scale) @ k.transpose(-2, -1)
    r_q = q.reshape(b * heads, d, h, w, -1)
    rel_d = torch.einsum("bdhwc,dkc->bdhwk", r_q, _rel_table(d, d, attn.rel_pos_d))
    rel_h = torch.einsum("bdhwc,hkc->bdhwk", r_q, _rel_table(h, h, attn.rel_pos_h))
    rel_w = torch.einsum("bdhwc,wkc->bdhwk", r_q, _rel_table(w, w, attn.rel_pos_w))
    # The released model's broadcast, verbatim in effect: it shifts the per-axis terms against
    # the key axes (see Attention3D), and its weights were trained with exactly this.
    logits = (
        logits.view(b * heads, d, h, w, d, h, w)
        + rel_d[:, :, :, :, None, None]
        + rel_h[:, :, :, None, :, None]
        + rel_w[:, :, :, None, None, :]
    ).view(b * heads, d * h * w, d * h * w)
    out = (logits.softmax(dim=-1) @ v).view(b, heads, d, h, w, -1)
    return attn.proj(out.permute(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, c))


def reference_block(blk: Block3D, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = blk.norm1(x)
    ws = blk.window_size
    if ws > 0:
        b, d, h, w, c = x.shape
        pd, ph, pw = (-d) % ws, (-h) % ws, (-w) % ws
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
        dp, hp, wp = d + pd, h + ph, w + pw
        win = x.view(b, dp // ws, ws, hp // ws, ws, wp // ws, ws, c)
        win = win.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws, ws, ws, c)
        win = reference_attention(blk.attn, win)
        x = win.view(b, dp // ws, hp // ws, wp // ws, ws, ws, ws, c)
        x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, c)[:, :d, :h, :w]
    else:
        x = reference_attention(blk.attn, x)
    x = shortcut + x
    return x + blk.mlp(blk.norm2(x))


def reference_encoder(enc: ImageEncoderViT3D, image: torch.Tensor) -> torch.Tensor:
    """The padded reference forward of ``enc`` (same weights): ``B x C x S^3 -> B x E x G^3``."""
    x = enc.patch_embed(image) + enc.pos_embed
    for blk in enc.blocks:
        x = reference_block(blk, x)
    return enc.neck(x.permute(0, 4, 1, 2, 3))


def reference_dino_attention(attn: DinoAttention, x: torch.Tensor) -> torch.Tensor:
    """3DINO's ``Attention.forward`` (no xFormers): explicit logits and softmax."""
    b, n, c = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // attn.num_heads) ** -0.5, qkv[1], qkv[2]
    weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def reference_dino_block(blk: DinoBlock3D, x: torch.Tensor) -> torch.Tensor:
    x = x + blk.ls1(reference_dino_attention(blk.attn, blk.norm1(x)))
    return x + blk.ls2(blk.mlp(blk.norm2(x)))


def reference_dino_encoder(enc: DinoImageEncoder3D, image: torch.Tensor) -> torch.Tensor:
    """3DINO's forward of ``enc``'s backbone (same weights) + the neck: ``B x E x G^3``."""
    bb = enc.backbone
    grid = tuple(s // bb.patch_size for s in image.shape[-3:])
    tokens = bb.patch_embed(image)
    tokens = torch.cat((bb.cls_token.expand(image.shape[0], -1, -1).to(tokens.dtype), tokens), 1)
    tokens = tokens + bb.interpolate_pos_encoding(grid, tokens.dtype)
    for blk in bb._flat_blocks():
        tokens = reference_dino_block(blk, tokens)
    tokens = bb.norm(tokens)[:, 1:]
    b, _, c = tokens.shape
    return enc.neck(tokens.transpose(1, 2).reshape(b, c, *grid))


# --------------------------------------------------------------------------------------------
# Benchmark driver: every variant runs in a fresh subprocess so that peak memory is its own.

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
WORKERS = ("baseline", "reference", "ours", "timing")


def _deterministic_model(seed: int, config: str = "sam_med3d") -> torch.nn.Module:
    """Architecture ``config`` with reproducible non-trivial weights (rel. positions too)."""
    from neurosam3d.model import build_model

    model = build_model(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=gen)
            tensor.copy_(
                1.0 + 0.1 * noise if tensor.ndim == 1 and "weight" in name else 0.02 * noise
            )
    return model.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024


def _timed(fn, device: torch.device) -> tuple[object, float, float]:
    """``fn()``, its wall-clock seconds and this process's CPU seconds."""
    import time

    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _fused_only(encoder: torch.nn.Module, device: torch.device):
    """On GPU, run ours with the math fallback of SDPA disabled: an error if no fused kernel fits."""
    if device.type != "cuda":
        return encoder
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]

    def forward(x: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(fused):
            return encoder(x)

    return forward


def _worker(args) -> dict[str, object]:
    """One measurement in this process (see ``WORKERS``)."""
    import statistics

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    model = _deterministic_model(args.seed, args.config).to(device)
    size = model.img_size
    image = torch.randn(
        (args.batch, 1, size, size, size), generator=torch.Generator().manual_seed(args.seed + 1)
    ).to(device)
    encoder = model.image_encoder
    reference = (
        reference_dino_encoder if model.config.encoder_type == "dinov2" else reference_encoder
    )
    variants = {
        "ours": _fused_only(encoder, device),
        "reference": lambda x: reference(encoder, x),
    }
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result: dict[str, object] = {"worker": args.worker}
    with torch.inference_mode(), autocast:
        if args.worker in variants:  # peak memory of one forward
            variants[args.worker](image)
        if args.worker != "timing":
            result["peak_bytes"] = _peak_bytes(device)
            return result
        # Timing: alternate the two variants so that load changes hit both alike.
        wall = {name: [] for name in variants}
        cpu = {name: [] for name in variants}
        outputs = {}
        for i in range(args.warmup + args.repeats):
            for name, forward in variants.items():
                outputs[name], w, c = _timed(lambda f=forward: f(image), device)
                if i >= args.warmup:
                    wall[name].append(w)
                    cpu[name].append(c)
        diff = (outputs["ours"].float() - outputs["reference"].float()).abs().max().item()
        result["max_abs_diff"] = diff
        for name in variants:
            result[f"{name}_forward_s"] = statistics.median(wall[name])
            result[f"{name}_cpu_s"] = statistics.median(cpu[name])
        result["click_ms"] = 1000 * _time_clicks(model, outputs["ours"], device)
    return result


def _time_clicks(model, embedding: torch.Tensor, device: torch.device) -> float:
    """Median wall seconds of one click (prompt encoder + decoder), embedding cached."""
    import statistics

    batch = embedding.shape[0]
    c = model.img_size / 2
    points = torch.tensor([[[c, c, c], [c, c, c - 24], [c - 24, c, c]]])
    labels = torch.tensor([[1, 0, 1]])
    points, labels = points.expand(batch, -1, -1).to(device), labels.expand(batch, -1).to(device)
    times = []
    for _ in range(4):
        previous = None
        for n in (1, 2, 3):
            (previous, _), wall, _ = _timed(
                lambda n=n, prev=previous: model.predict_masks(
                    embedding, points[:, :n], labels[:, :n], mask_input=prev
                ),
                device,
            )
            times.append(wall)
    return statistics.median(times[3:])  # first round is warm-up


def _run_worker(worker: str, args) -> dict[str, object]:
    import subprocess
    import sys

    cmd = [
        sys.executable, __file__, "--worker", worker, "--device", args.device,
        "--dtype", args.dtype, "--batch", str(args.batch), "--repeats", str(args.repeats),
        "--warmup", str(args.warmup), "--seed", str(args.seed), "--threads", str(args.threads),
        "--config", args.config,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{worker} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _compare(args) -> dict[str, object]:
    """Memory (one fresh process per variant) and timing (one process, interleaved)."""
    res = {w: _run_worker(w, args) for w in WORKERS}
    base = res["baseline"]["peak_bytes"] if args.device == "cpu" else 0
    ref_mem = res["reference"]["peak_bytes"] - base
    ours_mem = res["ours"]["peak_bytes"] - base
    timing = res["timing"]
    return {
        "config": args.config,
        "device": args.device,
        "dtype": args.dtype,
        "batch": args.batch,
        "threads": args.threads or torch.get_num_threads(),
        "reference_forward_s": round(timing["reference_forward_s"], 4),
        "ours_forward_s": round(timing["ours_forward_s"], 4),
        "reference_cpu_s": round(timing["reference_cpu_s"], 3),
        "ours_cpu_s": round(timing["ours_cpu_s"], 3),
        "reference_peak_mib": round(ref_mem / 2**20, 1),
        "ours_peak_mib": round(ours_mem / 2**20, 1),
        "encoder_speedup": round(timing["reference_forward_s"] / timing["ours_forward_s"], 2),
        "encoder_peak_mem_ratio": round(ours_mem / ref_mem, 3),
        "max_abs_diff": float(f"{timing['max_abs_diff']:.3g}"),
        "click_ms": round(timing["click_ms"], 2),
    }


def main() -> None:
    import argparse
    import copy

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config",
        default="sam_med3d",
        help="model configuration: sam_med3d (128^3) or dinov2_vitl3d (3DINO ViT-L, 112^3)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", help="comma list of fp32, bf16 (autocast)")
    parser.add_argument("--batch", default="1", help="comma list of batch sizes, e.g. 1,8")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.batch = int(args.batch)
        print(json.dumps(_worker(args)))
        return
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()}-core CPU"
    )
    rows = []
    for dtype in args.dtype.split(","):
        for batch in args.batch.split(","):
            run = copy.copy(args)
            run.dtype, run.batch = dtype, int(batch)
            row = _compare(run)
            rows.append(row)
            print(
                f"{args.config} {device_name} {dtype} batch {batch}: reference {row['reference_forward_s']:.3f} s "
                f"{row['reference_peak_mib']:.0f} MiB | ours {row['ours_forward_s']:.3f} s "
                f"{row['ours_peak_mib']:.0f} MiB | speedup {row['encoder_speedup']}x, memory "
                f"ratio {row['encoder_peak_mem_ratio']}, max|diff| {row['max_abs_diff']}, "
                f"click {row['click_ms']} ms",
                flush=True,
            )
    print(json.dumps({**rows[0], "device_name": device_name, "runs": rows}))


if __name__ == "__main__":
    main()

"""Checkpoint interop: read the released SAM-Med3D files and ours, detect the architecture, export.

Accepted inputs (``read_state_dict``):

* release format: a ``torch.save``-d dict with ``"model_state_dict"`` and an
  ``argparse.Namespace`` under ``"args"`` (plus epoch, losses, ... which are kept as metadata);
* a bare state dict, or one whose keys all start with ``module.`` (DDP);
* our Lightning checkpoints: ``{"state_dict": {"model.<key>": ...}, ...}`` (the LightningModule
  holds the :class:`Sam3D` as attribute ``model``; other entries of ``state_dict`` are ignored);
* ``.safetensors`` files.

Pickled files are read with ``torch.load(weights_only=True)`` and only ``argparse.Namespace``
allow-listed; a file that needs any other pickle global is refused with :class:`CheckpointError`
(nothing in it is executed). Loading is strict by default with a readable key report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from neurosam3d.io.atomic import atomic_path
from neurosam3d.model.builder import build_model
from neurosam3d.model.config import MODEL_CONFIGS, ModelConfig, get_config
from neurosam3d.model.sam3d import Sam3D

logger = logging.getLogger(__name__)

LIGHTNING_PREFIX = "model."
COMPONENTS = ("image_encoder", "prompt_encoder", "mask_decoder")
SAFE_GLOBALS = [argparse.Namespace]
ExportFormat = Literal["release", "safetensors", "lightning"]
StateDict = dict[str, torch.Tensor]


class CheckpointError(Exception):
    """A checkpoint could not be read, was refused, or does not fit the model."""


@dataclass
class KeyReport:
    """Differences between a checkpoint's state dict and a model's."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    matched: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"{self.matched} keys match, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} mis-shaped"
        ]
        lines += _listing("missing (in the model, not in the checkpoint)", self.missing)
        lines += _listing("unexpected (in the checkpoint, not in the model)", self.unexpected)
        lines += _listing(
            "mis-shaped (checkpoint vs model)",
            [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched],
        )
        return "\n".join(lines)


def _listing(title: str, items: list[str], limit: int = 10) -> list[str]:
    if not items:
        return []
    shown = [f"    {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"    ... and {len(items) - limit} more")
    return [f"  {title}:", *shown]


@dataclass
class CheckpointContents:
    """A checkpoint's weights (keys as in :class:`Sam3D`), its format and its other entries."""

    state_dict: StateDict
    format: str
    metadata: dict[str, Any]


def compare_state_dicts(
    checkpoint: Mapping[str, torch.Tensor], model: Mapping[str, torch.Tensor]
) -> KeyReport:
    """Key-by-key comparison of two state dicts (names and shapes)."""
    report = KeyReport()
    for key, tensor in model.items():
        if key not in checkpoint:
            report.missing.append(key)
        elif tuple(checkpoint[key].shape) != tuple(tensor.shape):
            report.mismatched.append((key, tuple(checkpoint[key].shape), tuple(tensor.shape)))
        else:
            report.matched += 1
    report.unexpected = [key for key in checkpoint if key not in model]
    return report


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message also suggests weights_only=False, which we never do: keep the cause.
        cause = next(
            (ln.strip() for ln in str(exc).splitlines() if "unsupported" in ln.lower()),
            "unsupported pickle",
        )
        raise CheckpointError(
            f"refusing to load {path}: it needs pickled objects outside the allow-list "
            f"(tensors, plain containers, argparse.Namespace): {cause}. Nothing in it was run; "
            f"if you trust the file, re-save its weights as safetensors elsewhere."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"cannot read {path}: truncated or not a PyTorch checkpoint ({exc})"
        ) from None


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({exc})") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_state_dict(path: str | os.PathLike[str]) -> CheckpointContents:
    """Read weights from any accepted format (module docstring); keys as in :class:`Sam3D`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state_dict, metadata = _read_safetensors(path)
        return CheckpointContents(state_dict, "safetensors", metadata)
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        fmt, raw = "release", obj["model_state_dict"]
        metadata = {k: v for k, v in obj.items() if k != "model_state_dict"}
    elif isinstance(obj, Mapping) and "state_dict" in obj and _is_state_dict(obj["state_dict"]):
        fmt = "lightning"
        raw = {
            k.removeprefix(LIGHTNING_PREFIX): v
            for k, v in obj["state_dict"].items()
            if k.startswith(LIGHTNING_PREFIX)
        }
        if not raw:
            raise CheckpointError(
                f"{path} is a Lightning checkpoint without '{LIGHTNING_PREFIX}*' keys: the "
                f"LightningModule must hold the Sam3D as attribute 'model'"
            )
        metadata = {k: v for k, v in obj.items() if k != "state_dict"}
    elif _is_state_dict(obj):
        fmt, raw, metadata = "state_dict", obj, {}
    else:
        raise CheckpointError(
            f"{path} holds no recognisable weights (expected a release dict with "
            f"'model_state_dict', a Lightning dict with 'state_dict', or a state dict)"
        )
    if not _is_state_dict(raw):
        raise CheckpointError(f"{path}: the weights entry is not a mapping of names to tensors")
    if all(k.startswith("module.") for k in raw):
        raw = {k.removeprefix("module."): v for k, v in raw.items()}
        fmt += "+ddp"
    return CheckpointContents(dict(raw), fmt, metadata)


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state_dict if (m := rx.match(k))})


def detect_config(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, ModelConfig]:
    """Infer the configuration from key names and shapes.

    Returns the registered name whose configuration matches (``"custom"`` if none). The decoder's
    head count leaves no trace in the weights: it is taken from the matching registered
    configuration, else the released model's 8.
    """
    sd = state_dict
    try:
        embed_dim, in_chans, patch = sd["image_encoder.patch_embed.proj.weight"].shape[:3]
        grid = sd["image_encoder.pos_embed"].shape[1]
        depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
        rel_rows = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape[0] for i in range(depth)]
        windows = {(r + 1) // 2 for r in rel_rows if r != 2 * grid - 1}
        prompt_dim = sd["image_encoder.neck.0.weight"].shape[0]
        cross_dim = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
        detected = ModelConfig(
            img_size=grid * patch,
            in_chans=in_chans,
            patch_size=patch,
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // sd["image_encoder.blocks.0.attn.rel_pos_d"].shape[1],
            encoder_mlp_ratio=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
            encoder_global_attn_indexes=tuple(
                i for i, r in enumerate(rel_rows) if r == 2 * grid - 1
            ),
            encoder_window_size=windows.pop() if len(windows) == 1 else 0,
            prompt_embed_dim=prompt_dim,
            mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            box_prompts="prompt_encoder.point_embeddings.2.weight" in sd,
            decoder_depth=_count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
            decoder_mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            decoder_attention_downsample_rate=prompt_dim // cross_dim.shape[0],
            num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
            iou_head_depth=_count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise CheckpointError(
            f"cannot detect the architecture from the weights ({type(exc).__name__}: {exc}); "
            f"pass the configuration name explicitly (one of {sorted(MODEL_CONFIGS)})"
        ) from None
    for name, cfg in MODEL_CONFIGS.items():
        if replace(detected, decoder_num_heads=cfg.decoder_num_heads) == cfg:
            return name, cfg
    logger.warning(
        "weights match no registered configuration; assuming %d decoder heads",
        detected.decoder_num_heads,
    )
    return "custom", detected


def _restrict(keys: Iterable[str], components: tuple[str, ...] | None) -> set[str]:
    keys = set(keys)
    if components is None:
        return keys
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")
    return {k for k in keys if k.split(".", 1)[0] in components}


def load_checkpoint(
    path: str | os.PathLike[str],
    name: str | ModelConfig | None = None,
    strict: bool = True,
    components: tuple[str, ...] | None = None,
) -> Sam3D:
    """Build a model and load weights from ``path`` (any format of :func:`read_state_dict`).

    Args:
        path: checkpoint file.
        name: registered configuration name or a :class:`ModelConfig`; ``None`` detects it
            from the weights (:func:`detect_config`).
        strict: refuse missing, unexpected or mis-shaped keys (in the loaded components).
        components: load only these submodules (e.g. ``("image_encoder",)``); the others keep
            their fresh initialisation. ``None`` loads the whole model.

    Returns:
        The model (CPU, float32, eval mode).

    Raises:
        CheckpointError: unreadable or refused file, undetectable architecture, or (strict)
            a key report with differences.
    """
    contents = read_state_dict(path)
    if name is None:
        detected, cfg = detect_config(contents.state_dict)
        logger.info("%s: detected configuration %r", path, detected)
    else:
        cfg = get_config(name) if isinstance(name, str) else name
    model = build_model(cfg)
    model_sd = model.state_dict()
    wanted = _restrict(model_sd, components)
    given = _restrict(contents.state_dict, components)
    report = compare_state_dicts(
        {k: contents.state_dict[k] for k in given}, {k: model_sd[k] for k in wanted}
    )
    if strict and not report.ok:
        raise CheckpointError(f"{path} does not fit the model:\n{report}")
    if not report.ok:
        logger.warning("%s: loading non-strictly:\n%s", path, report)
    mismatched = {k for k, _, _ in report.mismatched}
    loadable = {k: contents.state_dict[k] for k in given & wanted if k not in mismatched}
    model.load_state_dict(loadable, strict=False)
    return model.eval()


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` reports."""

    path: str
    format: str
    config_name: str
    config: ModelConfig
    num_tensors: int
    num_parameters: int
    report: KeyReport
    metadata: dict[str, Any]


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read ``path``, detect its architecture and compare its keys with that architecture.

    ``num_parameters`` counts the elements of the model's parameters present in the file
    (persistent buffers such as the prompt encoder's Fourier matrix excluded).
    """
    contents = read_state_dict(path)
    name, cfg = detect_config(contents.state_dict)
    model = build_model(cfg)
    report = compare_state_dicts(contents.state_dict, model.state_dict())
    params = {k for k, _ in model.named_parameters()}
    num_parameters = sum(v.numel() for k, v in contents.state_dict.items() if k in params)
    simple = {k: v for k, v in contents.metadata.items() if isinstance(v, int | float | str | bool)}
    return CheckpointInfo(
        str(path),
        contents.format,
        name,
        cfg,
        len(contents.state_dict),
        num_parameters,
        report,
        simple,
    )


def _plain_state_dict(model_or_sd: Sam3D | Mapping[str, torch.Tensor]) -> StateDict:
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, torch.nn.Module) else model_or_sd
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in sd.items()}


def _config_of(model_or_sd: Sam3D | Mapping[str, torch.Tensor]) -> ModelConfig:
    if isinstance(model_or_sd, Sam3D):
        return model_or_sd.config
    return detect_config(model_or_sd)[1]


def export_checkpoint(
    model_or_state_dict: Sam3D | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    fmt: ExportFormat = "release",
    epoch: int = 0,
) -> Path:
    """Write weights atomically in a format other tools read; return the path.

    * ``"release"``: the SAM-Med3D training script's dict (``model_state_dict``, ``epoch``, empty
      optimiser/scheduler states, losses, dices, ``args`` as an ``argparse.Namespace``), which
      SAM-Med3D's own tools and :func:`load_checkpoint` read;
    * ``"safetensors"``: the state dict, with the configuration as JSON metadata;
    * ``"lightning"``: ``{"state_dict": {"model.<key>": ...}, "epoch", "global_step", ...}``.

    Weights are stored as contiguous float32 CPU tensors.
    """
    sd = _plain_state_dict(model_or_state_dict)
    cfg = _config_of(model_or_state_dict)
    path = Path(path)
    with atomic_path(path) as tmp:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(tmp), metadata={"neurosam3d_config": json.dumps(cfg.to_dict())})
        elif fmt == "release":
            args = argparse.Namespace(
                model_type="vit_b_ori" if cfg == MODEL_CONFIGS["sam_med3d"] else "custom",
                img_size=cfg.img_size,
                neurosam3d_config=cfg.to_dict(),
            )
            payload = {
                "epoch": epoch,
                "model_state_dict": sd,
                "optimizer_state_dict": None,
                "lr_scheduler_state_dict": None,
                "losses": [],
                "dices": [],
                "best_loss": float("inf"),
                "best_dice": 0.0,
                "used_datas": [],
                "args": args,
            }
            torch.save(payload, tmp)
        elif fmt == "lightning":
            from importlib.metadata import version

            payload = {
                "state_dict": {LIGHTNING_PREFIX + k: v for k, v in sd.items()},
                "epoch": epoch,
                "global_step": 0,
                "pytorch-lightning_version": version("lightning"),
            }
            torch.save(payload, tmp)
        else:
            raise ValueError(
                f"unknown export format {fmt!r}; choose release, safetensors or lightning"
            )
    logger.info("wrote %s checkpoint %s", fmt, path)
    return path


def export_release(
    model: Sam3D | Mapping[str, torch.Tensor], path: str | os.PathLike[str], epoch: int = 0
) -> Path:
    """Shorthand for ``export_checkpoint(model, path, fmt="release")``."""
    return export_checkpoint(model, path, fmt="release", epoch=epoch)


def save_safetensors(model: Sam3D, path: str | os.PathLike[str]) -> Path:
    """Shorthand for ``export_checkpoint(model, path, fmt="safetensors")``."""
    return export_checkpoint(model, path, fmt="safetensors")

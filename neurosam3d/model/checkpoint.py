"""Load checkpoints into models: architecture detection, strict key checks, partial loading.

Reading and writing files is :mod:`neurosam3d.model.formats`; this module decides whether the
weights fit a model and loads them, with a readable report of missing, unexpected and
mis-shaped keys. Loading is strict by default; partial loading only when asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from neurosam3d.model.builder import build_model
from neurosam3d.model.config import ModelConfig, get_config
from neurosam3d.model.detect import config_from_metadata, detect_config
from neurosam3d.model.formats import CheckpointError, read_state_dict
from neurosam3d.model.sam2d import SAM2D_CONFIGS, Sam2D, Sam2DConfig
from neurosam3d.model.sam3d import Sam3D
from neurosam3d.transforms.preprocessing import (
    PREPROCESSING_KEY,
    Preprocessing,
    PreprocessingError,
    record_from_metadata,
)

logger = logging.getLogger(__name__)

COMPONENTS = ("image_encoder", "prompt_encoder", "mask_decoder")


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
    name: str | ModelConfig | Sam2DConfig | None = None,
    strict: bool = True,
    components: tuple[str, ...] | None = None,
) -> Sam3D | Sam2D:
    """Build a model and load weights from ``path`` (any format of :func:`read_state_dict`).

    Args:
        path: checkpoint file.
        name: registered configuration name (3-D, or the 2-D ``"sam_vit_b"`` /
            ``"sam_med2d_vit_b"``) or a configuration; ``None`` takes the one the file records
            (:func:`~neurosam3d.model.detect.config_from_metadata`), else detects it from the
            weights (:func:`detect_config`: SAM's bare state dict and SAM-Med2D's
            ``{"model": ...}`` give a :class:`~neurosam3d.model.sam2d.Sam2D`).
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
        cfg = _recorded_or_detected(path, contents)
    elif isinstance(name, str) and name in SAM2D_CONFIGS:
        cfg = SAM2D_CONFIGS[name]
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
    check_finite_weights(loadable, path)
    model.load_state_dict(loadable, strict=False)
    return model.eval()


def check_finite_weights(state_dict: dict[str, torch.Tensor], path: object) -> None:
    """Raise :class:`CheckpointError` naming the first tensors holding NaN or infinity: such
    weights give masks of garbage (or nothing) without any other sign of trouble."""
    bad = [
        key
        for key, tensor in state_dict.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{path}: weights hold NaN or infinite values ({shown})")


def _recorded_or_detected(path: str | os.PathLike[str], contents: Any) -> ModelConfig:
    """The configuration the file records if its weights fit it, else the detected one."""
    detected, cfg = detect_config(contents.state_dict)
    recorded = config_from_metadata(contents.metadata)
    if recorded is not None and recorded.img_size != cfg.img_size:
        from dataclasses import replace

        if replace(recorded, img_size=cfg.img_size) == cfg or detected == "custom":
            logger.info("%s: recorded configuration (input %d^3)", path, recorded.img_size)
            return recorded
    logger.info("%s: detected configuration %r", path, detected)
    return cfg


def read_preprocessing(path: str | os.PathLike[str]) -> tuple[Preprocessing, str]:
    """The :class:`~neurosam3d.transforms.Preprocessing` of a checkpoint: ``(record, where)``.

    ``where`` is ``"recorded"`` (the file holds one), ``"upstream default"`` (a release-format
    file without one: SAM-Med3D's RAS, 1.5 mm, per-crop z-score) or ``"native default"`` (any
    other file without one: stored axes, native grid, CT [-1000, 1000] + z-score);
    :func:`neurosam3d.transforms.record_from_metadata`. The input size comes from the weights
    when the record has none.
    """
    contents = read_state_dict(path)
    return _preprocessing_of(path, contents)


def _preprocessing_of(path: str | os.PathLike[str], contents: Any) -> tuple[Preprocessing, str]:
    try:
        size = _recorded_or_detected(path, contents).img_size
    except CheckpointError:
        size = None
    try:
        return record_from_metadata(contents.metadata, contents.format, size, path)
    except PreprocessingError as exc:
        raise CheckpointError(str(exc)) from None


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` reports (``preprocessing``/``preprocessing_source``:
    :func:`read_preprocessing`)."""

    path: str
    format: str
    config_name: str
    config: ModelConfig | Sam2DConfig
    num_tensors: int
    num_parameters: int
    report: KeyReport
    metadata: dict[str, Any]
    preprocessing: Preprocessing | None = None
    preprocessing_source: str = ""


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
    simple = {
        k: v
        for k, v in contents.metadata.items()
        if isinstance(v, int | float | str | bool) and k != PREPROCESSING_KEY
    }
    preprocessing, source = (
        _preprocessing_of(path, contents) if isinstance(cfg, ModelConfig) else (None, "")
    )
    return CheckpointInfo(
        str(path),
        contents.format,
        name,
        cfg,
        len(contents.state_dict),
        num_parameters,
        report,
        simple,
        preprocessing,
        source,
    )

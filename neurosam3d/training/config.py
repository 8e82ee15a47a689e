"""Training configuration: typed sections read from YAML, with dotted command-line overrides.

A configuration file holds the sections below; every key is optional and unknown keys are
rejected with the file and the key named. ``apply_overrides(raw, ["trainer.max_steps=20"])``
changes one value of the raw mapping before validation; the value is parsed as YAML
(``20`` -> int, ``[1, 2]`` -> list, ``null`` -> None).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from neurosam3d.model.config import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Which manifest rows to train and validate on, and how to turn them into crops.

    Paths in manifests are relative to ``root`` (the label-tree root); crops are read from its
    training store (``root/store.parquet``, written by ``neurosam3d prepare`` or
    ``neurosam3d store build``). Crops are ``model.img_size``^3 voxels of the prepared grid.
    ``orientation`` (axis codes, e.g. ``RAS``) and ``spacing_mm`` (mm per axis) say what that
    grid is (what ``prepare --orientation/--spacing-mm`` made it; ``None``: the images' own);
    training checks every case against them, and with ``ct_window`` they become the model's
    :class:`~neurosam3d.transforms.Preprocessing` record, saved in every checkpoint, so
    evaluation, ``predict`` and the registered model prepare inputs the same way.
    ``ct_window`` must be the window the store's statistics were computed with
    (``neurosam3d store build --ct-window``; default [-1000, 1000]).
    """

    root: str = "work/data"
    train_manifests: tuple[str, ...] = ()
    val_manifests: tuple[str, ...] = ()
    train_splits: tuple[str, ...] = ("Tr",)
    val_splits: tuple[str, ...] = ("Val",)
    datasets: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    cases: tuple[str, ...] | None = None
    min_voxels: int = 1
    min_volume_mm3: float = 0.0
    #: sampling weight of each dataset (default 1); within a dataset classes weigh equally
    dataset_weights: dict[str, float] = field(default_factory=dict)
    #: extra weight per class name (default 1), e.g. to oversample rare structures
    class_weights: dict[str, float] = field(default_factory=dict)
    samples_per_epoch: int = 256
    val_max_items: int | None = None
    batch_size: int = 2
    num_workers: int = 0
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    orientation: str | None = None
    spacing_mm: tuple[float, float, float] | None = None
    #: torchio transforms, each ``{name: RandomFlip, ...kwargs}``, applied in order to train crops
    augment: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ModelSection:
    """The network to train.

    ``name``: a registered model configuration (``neurosam3d.model.MODEL_CONFIGS``);
    ``checkpoint``: whole-model weights to fine-tune from (any format ``load_checkpoint``
    reads); ``pretrained_encoder``: encoder-only weights loaded after that
    (``neurosam3d.model.load_pretrained_encoder``: a 3DINO pretraining checkpoint, or the
    ``image_encoder.*`` of any checkpoint of ours); ``img_size``: another input (crop) edge than
    the configuration's (a 3DINO encoder resizes its position embedding; a SAM-Med3D one then
    has a position embedding of another shape and cannot load release weights);
    ``activation_checkpointing``: recompute encoder activations in the backward pass.
    """

    name: str = "tiny"
    checkpoint: str | None = None
    pretrained_encoder: str | None = None
    img_size: int | None = None
    activation_checkpointing: bool = False

    def architecture(self) -> ModelConfig:
        """The :class:`~neurosam3d.model.ModelConfig` to build (``name`` with ``img_size``)."""
        from dataclasses import replace

        from neurosam3d.model.config import get_config

        cfg = get_config(self.name)
        return replace(cfg, img_size=self.img_size) if self.img_size else cfg


@dataclass(frozen=True)
class ClickConfig:
    """The interaction loop (training) and the validation protocol."""

    num_clicks: int = 11
    rule: str = "random_error"
    val_rule: str = "random_error"
    val_clicks: int = 10
    val_seed: int = 1234
    #: clicks after which validation Dice is reported (1-based)
    val_report: tuple[int, ...] = (1, 5, 10)
    iou_loss_weight: float = 1.0


@dataclass(frozen=True)
class OptimConfig:
    """AdamW; prompt encoder and mask decoder use ``lr * decoder_lr_scale``."""

    lr: float = 8e-4
    decoder_lr_scale: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, evaluated per optimiser step (``constant``, ``step``,
    ``multistep`` or ``cosine``), after ``warmup_steps`` of linear warm-up."""

    name: str = "cosine"
    warmup_steps: int = 0
    step_size: int = 1000
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


@dataclass(frozen=True)
class TrainerConfig:
    """Options passed to ``lightning.Trainer`` (and the DDP strategy)."""

    max_steps: int = 1000
    max_time_s: float | None = None
    val_every_n_steps: int = 200
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = 1.0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    log_every_n_steps: int = 10
    #: torch intra-op threads for the run (None: torch's default, one per core). On a CPU shared
    #: with other jobs, 1 avoids OpenMP threads spin-waiting on each other (10x faster measured)
    cpu_threads: int | None = None
    validate_before_training: bool = True
    monitor: str = "val/dice_5"
    #: also write ``checkpoints/last.ckpt`` every N optimiser steps (it is always written at
    #: every validation and at the end); None: only then
    checkpoint_every_n_steps: int | None = None


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: ``uri`` (None: ``MLFLOW_TRACKING_URI`` or the embedded SQLite store)."""

    uri: str | None = None
    experiment: str = "neurosam3d-train"
    run_name: str | None = None
    overlays: int = 3
    #: log the best and last checkpoints as run artifacts; False where another store keeps
    #: them (the DVC pipeline: its cache holds them once), and the run lists them instead
    #: (``checkpoints.json``: name, path, bytes, SHA-256)
    log_checkpoints: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    clicks: ClickConfig = field(default_factory=ClickConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), for YAML, MLflow params and checkpoints."""
        return _plain(dataclasses.asdict(self))


class ConfigError(ValueError):
    """An invalid configuration; the message names the source and the key."""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (tuples from lists, ints as floats)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        errors = []
        for arm in typing.get_args(hint):
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_t, val_t = typing.get_args(hint)
        return {
            _coerce(k, key_t, where): _coerce(v, val_t, f"{where}.{k}") for k, v in value.items()
        }
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()})


def config_from_dict(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a raw nested mapping into a :class:`TrainConfig` (``source`` names it in errors)."""
    return _build(TrainConfig, raw or {}, source)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Copy of ``raw`` with each ``dotted.key=value`` override applied (value parsed as YAML)."""
    out = yaml.safe_load(yaml.safe_dump(raw or {}))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(text)
    return out


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read YAML ``path``, apply ``overrides`` and validate."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    return config_from_dict(apply_overrides(raw, overrides), str(path))

"""The seed's training CLI habits on top of ours: ``neurosam3d train fit|validate|test``.

The seed (NeuroSAM3D) is driven as a Lightning CLI (``train.py fit --config FILE
--data.volume_threshold 1000 --model.checkpoint X --trainer.devices 8 --ckpt_path last.ckpt``).
This module maps those flags onto our one training configuration
(:class:`~neurosam3d.training.config.TrainConfig`) and our ``train()``; it is a thin parser, not
a second configuration system:

* ``--SECTION.KEY VALUE`` or ``--SECTION.KEY=VALUE``: any key of our configuration (value
  parsed as YAML, exactly like ``--set SECTION.KEY=VALUE``), with the seed's names translated
  (:data:`SEED_KEYS`, :data:`SEED_VALUES`); an unknown key is an error naming it;
* ``--config FILE`` (the training YAML), ``--ckpt_path FILE`` (``fit``: resume; ``validate`` /
  ``test``: the Lightning checkpoint of ours to score), ``--print_config`` (print the resolved
  configuration as YAML and exit), ``--seed_everything N`` (``seed``), ``--out DIR`` (ours),
  and our ``--set`` / ``--overrides``.

``validate`` scores the validation split (``data.val_splits``) with the training's click
protocol; ``test`` does the same on the ``Ts`` split. Both print the Dice after the reported
clicks as JSON. (``neurosam3d evaluate`` is the full held-out evaluation.)
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: seed flag -> our configuration key (same meaning and unit)
SEED_KEYS = {
    "data.volume_threshold": "data.min_volume_mm3",  # targets kept above this many mm^3
    "model.pretrained_weights": "model.pretrained_encoder",  # encoder-only weights
    "model.crop_size": "model.img_size",
    "seed_everything": "seed",
}
#: seed flag whose values are renamed: flag -> (our key, {seed value: our value})
SEED_VALUES = {
    "model.model_type": ("model.name", {"dinov2": "dinov2_vitl3d", "vit_b_ori": "sam_med3d"}),
}
SUBCOMMANDS = ("fit", "validate", "test")

HELP = """\
usage: neurosam3d train {fit,validate,test} --config FILE [--SECTION.KEY VALUE ...]
                        [--ckpt_path FILE] [--print_config] [--out DIR] [--set KEY=VALUE ...]

The seed's Lightning-CLI habits, mapped onto our training configuration.

  --config FILE           training YAML, e.g. configs/neurosam3d-dino.yaml
  --SECTION.KEY VALUE     any configuration key (YAML value), e.g. --trainer.max_steps 2,
                          --trainer.devices 8, --model.checkpoint FILE, --data.batch_size 4
  --data.volume_threshold N     seed name of --data.min_volume_mm3 (keep targets above N mm^3)
  --model.pretrained_weights F  seed name of --model.pretrained_encoder (encoder only)
  --model.model_type dinov2     seed name of --model.name dinov2_vitl3d (vit_b_ori: sam_med3d)
  --seed_everything N     seed name of --seed
  --ckpt_path FILE        fit: resume from this checkpoint of ours; validate/test: score it
  --print_config          print the resolved configuration (YAML) and exit
  --out DIR               fit: output folder (default work/train)
  --set KEY=VALUE         our override syntax (repeatable); --overrides "K=V K=V" too
"""


class SeedArgsError(ValueError):
    """A command line the seed layer cannot map (the message names the flag)."""


@dataclass
class SeedArgs:
    """A parsed ``neurosam3d train SUBCOMMAND ...`` command line."""

    subcommand: str
    config: Path | None = None
    overrides: list[str] = field(default_factory=list)
    ckpt_path: str | None = None
    out: Path = Path("work/train")
    print_config: bool = False
    help: bool = False


def translate(key: str, value: str) -> str:
    """``key=value`` in our configuration's names for a seed flag (or one of ours)."""
    if key in SEED_VALUES:
        ours, values = SEED_VALUES[key]
        if value not in values:
            raise SeedArgsError(f"--{key} {value!r}: known values {sorted(values)}")
        return f"{ours}={values[value]}"
    return f"{SEED_KEYS.get(key, key)}={value}"


def parse_seed_args(subcommand: str, argv: list[str]) -> SeedArgs:
    """Parse the arguments after ``neurosam3d train SUBCOMMAND``."""
    if subcommand not in SUBCOMMANDS:
        raise SeedArgsError(f"unknown subcommand {subcommand!r}; choose from {SUBCOMMANDS}")
    out = SeedArgs(subcommand)
    text_overrides: list[str] = []
    sets: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            out.help = True
            i += 1
            continue
        if not arg.startswith("--"):
            raise SeedArgsError(f"unexpected argument {arg!r}: flags are --SECTION.KEY VALUE")
        name, eq, value = arg[2:].partition("=")
        if name == "print_config":
            if eq:
                raise SeedArgsError("--print_config takes no value")
            out.print_config = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise SeedArgsError(f"--{name} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        if name == "config":
            out.config = Path(value)
        elif name == "ckpt_path":
            out.ckpt_path = value
        elif name == "out":
            out.out = Path(value)
        elif name == "set":
            sets.append(value)
        elif name == "overrides":
            text_overrides.extend(shlex.split(value))
        elif "." in name or name in SEED_KEYS:
            out.overrides.append(translate(name, value))
        else:
            raise SeedArgsError(
                f"unknown flag --{name}; use --SECTION.KEY VALUE for configuration keys "
                f"(sections: seed, data, model, clicks, optim, schedule, trainer, tracking)"
            )
    # same precedence as `neurosam3d train`: --overrides, then --set, then dotted flags
    out.overrides = [*text_overrides, *sets, *out.overrides]
    if out.config is None and not out.help:
        raise SeedArgsError("--config FILE is required (e.g. configs/neurosam3d-dino.yaml)")
    return out


def _validate(cfg: Any, ckpt_path: str | None, split_name: str) -> dict[str, float]:
    """Click-protocol validation of ``cfg``'s model (or ``ckpt_path``) on its val rows."""
    import lightning as L

    from neurosam3d.training.datamodule import ManifestDataModule
    from neurosam3d.training.module import InteractiveSegmentationModule

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = InteractiveSegmentationModule(cfg.to_dict())
    data = ManifestDataModule(
        cfg.data,
        cfg.model.architecture().img_size,
        cfg.seed,
        intensity=module.preprocessing.intensity,
    )
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    metrics = trainer.validate(module, datamodule=data, ckpt_path=ckpt_path, verbose=False)[0]
    return {k.replace("val/", f"{split_name}/"): float(v) for k, v in metrics.items()}


def run_seed_command(args: SeedArgs) -> int:
    """Run a parsed command; return the exit status."""
    from neurosam3d.training import load_config
    from neurosam3d.training import train as run_training

    if args.help:
        sys.stdout.write(HELP)
        return 0
    assert args.config is not None
    overrides = list(args.overrides)
    if args.subcommand == "test" and not any(o.startswith("data.val_splits=") for o in overrides):
        overrides.insert(0, "data.val_splits=[Ts]")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    if args.subcommand == "fit":
        summary = run_training(cfg, args.out, resume=args.ckpt_path)
        sys.stdout.write(json.dumps(asdict(summary), indent=2) + "\n")
        return 0
    split = "val" if args.subcommand == "validate" else "test"
    metrics = _validate(cfg, args.ckpt_path, split)
    sys.stdout.write(json.dumps(metrics, indent=2) + "\n")
    return 0


def main(subcommand: str, argv: list[str]) -> int:
    """``neurosam3d train SUBCOMMAND ARGS``: parse, run, report errors as one line."""
    from neurosam3d.model import CheckpointError
    from neurosam3d.training.config import ConfigError

    try:
        return run_seed_command(parse_seed_args(subcommand, argv))
    except (SeedArgsError, ConfigError, CheckpointError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2

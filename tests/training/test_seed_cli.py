"""The seed's CLI habits: `neurosam3d train fit|validate|test` with dotted flags."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from neurosam3d.cli import app
from neurosam3d.cli.seed import SeedArgsError, parse_seed_args
from neurosam3d.model import build_model, export_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DINO = str(CONFIGS / "neurosam3d-dino.yaml")


def test_seed_flags_map_onto_our_keys() -> None:
    args = parse_seed_args(
        "fit",
        [
            "--config", DINO,
            "--data.volume_threshold", "1000",
            "--model.pretrained_weights=enc.pth",
            "--model.checkpoint", "whole.pth",
            "--trainer.devices", "8",
            "--model.model_type", "dinov2",
            "--seed_everything", "7",
            "--ckpt_path", "last.ckpt",
            "--set", "trainer.max_steps=3",
            "--overrides", "optim.lr=0.1 optim.weight_decay=0.2",
        ],
    )  # fmt: skip
    assert args.config == Path(DINO) and args.ckpt_path == "last.ckpt"
    assert args.overrides == [
        "optim.lr=0.1",
        "optim.weight_decay=0.2",
        "trainer.max_steps=3",
        "data.min_volume_mm3=1000",
        "model.pretrained_encoder=enc.pth",
        "model.checkpoint=whole.pth",
        "trainer.devices=8",
        "model.name=dinov2_vitl3d",
        "seed=7",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", DINO, "--trainer.max_steps"], "--trainer.max_steps needs a value"),
        (["--config", DINO, "--verbose", "1"], "unknown flag --verbose"),
        (["--config", DINO, "stray"], "unexpected argument 'stray'"),
        (["--config", DINO, "--model.model_type", "vit_h"], "known values"),
        (["--trainer.max_steps", "2"], "--config FILE is required"),
    ],
)
def test_bad_seed_command_lines_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(SeedArgsError, match=message):
        parse_seed_args("fit", argv)


def test_print_config_shows_the_resolved_configuration() -> None:
    args = ["train", "fit", "--config", DINO, "--data.volume_threshold", "1000"]
    args += ["--trainer.devices", "8", "--model.pretrained_weights", "enc.pth", "--print_config"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load(result.output)
    assert cfg["data"]["min_volume_mm3"] == 1000.0
    assert cfg["trainer"]["devices"] == 8
    assert cfg["model"] == {
        "name": "dinov2_vitl3d",
        "checkpoint": None,
        "pretrained_encoder": "enc.pth",
        "img_size": None,
        "activation_checkpointing": True,
    }
    test = CliRunner().invoke(app, ["train", "test", "--config", DINO, "--print_config"])
    assert yaml.safe_load(test.output)["data"]["val_splits"] == ["Ts"]


def test_unknown_key_and_help() -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "fit", "--config", DINO, "--trainer.max_epochs", "3"])
    assert bad.exit_code == 2
    assert "unknown keys ['max_epochs']" in bad.stderr
    helped = runner.invoke(app, ["train", "fit", "--help"])
    assert helped.exit_code == 0 and "--data.volume_threshold" in helped.output
    no_config = runner.invoke(app, ["train", "--set", "trainer.max_steps=1"])
    assert no_config.exit_code == 2 and "--config" in no_config.output


def test_validate_scores_a_checkpoint(
    ct_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate --ckpt_path` on a Lightning checkpoint of ours (fit itself is `train()`,
    tested in test_train_run.py; its flags are the same parser's)."""
    monkeypatch.setenv("NEUROSAM3D_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.manual_seed(0)
    ckpt = export_checkpoint(build_model("tiny"), tmp_path / "tiny.ckpt", fmt="lightning")
    args = [
        "train", "validate", "--config", str(CONFIGS / "demo-cpu.yaml"),
        f"--data.root={ct_manifest.parent}",
        f"--data.train_manifests=[{ct_manifest}]",
        f"--data.val_manifests=[{ct_manifest}]",
        "--data.classes", "[liver]",
        "--data.val_max_items", "1",
        "--clicks.val_clicks", "2",
        "--clicks.val_report", "[1, 2]",
        "--trainer.monitor", "val/dice_2",
        "--tracking.overlays", "0",
        "--trainer.accelerator", "cpu",
        "--ckpt_path", str(ckpt),
    ]  # fmt: skip
    handlers = list(logging.getLogger().handlers)
    val = CliRunner().invoke(app, args, catch_exceptions=False)
    for handler in set(logging.getLogger().handlers) - set(handlers):
        logging.getLogger().removeHandler(handler)
    assert val.exit_code == 0, val.output
    metrics = json.loads(val.stdout[val.stdout.index("{") :])
    assert set(metrics) >= {"val/dice_1", "val/dice_2", "val/items"}
    assert metrics["val/items"] == 1.0 and 0.0 <= metrics["val/dice_2"] <= 1.0

"""Configuration loading, overrides and validation; the shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurosam3d.training.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_overrides_parse_yaml_values_into_typed_fields() -> None:
    raw = apply_overrides(
        {"trainer": {"max_steps": 5}},
        [
            "trainer.max_steps=20",
            "data.ct_window=[-500, 500]",
            "data.classes=[liver]",
            "tracking.uri=null",
        ],
    )
    cfg = config_from_dict(raw)
    assert cfg.trainer.max_steps == 20
    assert cfg.data.ct_window == (-500.0, 500.0)
    assert cfg.data.classes == ("liver",)
    assert cfg.tracking.uri is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trainer": {"max_step": 3}}, r"config.trainer: unknown keys \['max_step'\]"),
        ({"trainer": {"max_steps": "many"}}, "config.trainer.max_steps: expected int"),
        ({"data": {"ct_window": [1]}}, "config.data.ct_window: expected 2 values"),
        ({"optim": []}, "config.optim: expected a mapping"),
    ],
)
def test_invalid_configs_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_malformed_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        apply_overrides({}, ["trainer.max_steps"])


@pytest.mark.parametrize("name", ["demo-cpu.yaml", "sam-med3d.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.clicks.num_clicks == 11
    assert cfg.clicks.val_report == (1, 5, 10)
    assert cfg.data.train_manifests


def test_full_config_is_the_released_architecture_in_bf16() -> None:
    cfg = load_config(CONFIGS / "sam-med3d.yaml")
    assert cfg.model.name == "sam_med3d" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.strategy == "ddp" or cfg.trainer.devices == 1

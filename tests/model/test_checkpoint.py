"""Checkpoint interop: every accepted format, refusals, strictness, detection and export."""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosam3d.model import (
    MODEL_CONFIGS,
    CheckpointError,
    Sam3D,
    build_model,
    detect_config,
    export_checkpoint,
    inspect_checkpoint,
    load_checkpoint,
    read_state_dict,
    save_safetensors,
)
from tests.model.conftest import randomise


@pytest.fixture(scope="module")
def tiny() -> Sam3D:
    return randomise(build_model("tiny"), seed=7)


def _assert_same_weights(model: Sam3D, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def _release_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, object]:
    """What SAM-Med3D's training script saves."""
    return {
        "epoch": 199,
        "model_state_dict": state_dict,
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 8e-5}]},
        "lr_scheduler_state_dict": {"last_epoch": 199},
        "losses": [0.5, 0.4],
        "dices": [0.6, 0.7],
        "best_loss": 0.4,
        "best_dice": 0.7,
        "used_datas": ["AMOS"],
        "args": argparse.Namespace(model_type="vit_b_ori", img_size=128, lr=8e-5),
    }


def test_release_file_with_namespace_loads_and_keeps_parity(
    tmp_path: Path,
    golden_state_dict: dict[str, torch.Tensor],
    golden_embedding: torch.Tensor,
    golden: dict[str, np.ndarray],
) -> None:
    path = tmp_path / "sam_med3d_turbo.pth"
    torch.save(_release_dict(golden_state_dict), path)
    with pytest.raises(pickle.UnpicklingError):  # the Namespace really needs the allow-list
        torch.load(path, weights_only=True)

    model = load_checkpoint(path)  # architecture detected
    assert model.config == MODEL_CONFIGS["sam_med3d"]
    points = torch.from_numpy(golden["click1_points"])
    labels = torch.from_numpy(golden["click1_labels"])
    with torch.inference_mode():
        logits, _ = model.predict_masks(golden_embedding, points, labels)
    assert np.abs(logits.numpy() - golden["click1_low_res_logits"]).max() <= 1e-4

    info = inspect_checkpoint(path)
    assert (info.format, info.config_name, info.num_tensors) == ("release", "sam_med3d", 324)
    assert info.num_parameters == 100_509_232
    assert info.report.ok and info.metadata["epoch"] == 199


@pytest.mark.parametrize(
    ("fmt", "wrap"),
    [
        ("state_dict", lambda sd: sd),
        ("state_dict+ddp", lambda sd: {f"module.{k}": v for k, v in sd.items()}),
        ("release+ddp", lambda sd: _release_dict({f"module.{k}": v for k, v in sd.items()})),
        (
            "lightning",
            lambda sd: {
                "state_dict": {
                    **{f"model.{k}": v for k, v in sd.items()},
                    "criterion.pos_weight": torch.ones(1),  # other module state is ignored
                },
                "epoch": 3,
                "global_step": 120,
                "hyper_parameters": {"lr": 1e-4, "config": "tiny"},
                "optimizer_states": [{"state": {}, "param_groups": []}],
            },
        ),
    ],
)
def test_pickled_variants_load(tmp_path: Path, tiny: Sam3D, fmt: str, wrap) -> None:
    path = tmp_path / "weights.pth"
    torch.save(wrap(tiny.state_dict()), path)
    assert read_state_dict(path).format == fmt
    _assert_same_weights(load_checkpoint(path), tiny.state_dict())


@pytest.mark.parametrize("fmt", ["release", "safetensors", "lightning"])
def test_export_round_trip(tmp_path: Path, tiny: Sam3D, fmt: str) -> None:
    path = tmp_path / f"out.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    path.write_bytes(b"old contents")  # replaced atomically
    export_checkpoint(tiny, path, fmt=fmt, epoch=5)
    assert read_state_dict(path).format == fmt
    _assert_same_weights(load_checkpoint(path, name="tiny"), tiny.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_release_export_is_what_sam_med3d_tools_read(tmp_path: Path, tiny: Sam3D) -> None:
    path = export_checkpoint(tiny, tmp_path / "tiny.pth", fmt="release", epoch=12)
    with torch.serialization.safe_globals([argparse.Namespace]):
        raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 12 and isinstance(raw["args"], argparse.Namespace)
    assert {"optimizer_state_dict", "lr_scheduler_state_dict", "losses", "dices"} <= set(raw)
    assert list(raw["model_state_dict"]) == list(tiny.state_dict())
    assert raw["args"].neurosam3d_config["img_size"] == 64


def test_safetensors_carries_the_config(tmp_path: Path, tiny: Sam3D) -> None:
    path = save_safetensors(tiny, tmp_path / "tiny.safetensors")
    contents = read_state_dict(path)
    assert '"encoder_embed_dim": 96' in contents.metadata["neurosam3d_config"]
    _assert_same_weights(load_checkpoint(path), tiny.state_dict())


def test_truncated_file_is_a_clear_error(tmp_path: Path, tiny: Sam3D) -> None:
    path = export_checkpoint(tiny, tmp_path / "cut.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read .*cut\.pth.*truncated"):
        load_checkpoint(path)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(save_safetensors(tiny, tmp_path / "x.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        load_checkpoint(bad)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_pickle_that_would_run_code_is_refused(tmp_path: Path, tiny: Sam3D, how: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"model_state_dict": tiny.state_dict(), "args": _RunsCode(marker)}
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil\.pth"):
        load_checkpoint(path)
    assert not marker.exists()
    if how == "torch.save":
        with pytest.raises(CheckpointError, match=r"posix\.system"):
            read_state_dict(path)


def test_strict_report_lists_missing_unexpected_and_misshaped(tmp_path: Path, tiny: Sam3D) -> None:
    sd = dict(tiny.state_dict())
    del sd["mask_decoder.iou_token.weight"]
    sd["mask_decoder.extra_head.weight"] = torch.zeros(3)
    sd["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 5)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, name="tiny")
    text = str(err.value)
    assert "1 missing, 1 unexpected, 1 mis-shaped" in text
    assert "mask_decoder.iou_token.weight" in text and "mask_decoder.extra_head.weight" in text
    assert "prompt_encoder.no_mask_embed.weight: (1, 5) vs (1, 96)" in text

    model = load_checkpoint(path, name="tiny", strict=False)  # only when asked
    assert torch.equal(model.state_dict()["image_encoder.pos_embed"], sd["image_encoder.pos_embed"])


def test_wrong_architecture_is_refused(tmp_path: Path, tiny: Sam3D) -> None:
    path = export_checkpoint(tiny, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_checkpoint(path, name="small")


def test_partial_loading_of_the_encoder_only(tmp_path: Path, tiny: Sam3D) -> None:
    encoder_only = {k: v for k, v in tiny.state_dict().items() if k.startswith("image_encoder.")}
    path = tmp_path / "encoder.pth"
    torch.save(encoder_only, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path, name="tiny")
    model = load_checkpoint(path, name="tiny", components=("image_encoder",))
    _assert_same_weights(model.image_encoder, {k[14:]: v for k, v in encoder_only.items()})
    fresh_token = model.state_dict()["mask_decoder.iou_token.weight"]
    assert not torch.equal(fresh_token, tiny.state_dict()["mask_decoder.iou_token.weight"])


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_every_registered_configuration_is_detected(name: str) -> None:
    with torch.device("meta"):
        sd = build_model(name).state_dict()
    assert detect_config(sd) == (name, MODEL_CONFIGS[name])


def test_undetectable_weights_ask_for_a_name(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="pass the configuration name"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")

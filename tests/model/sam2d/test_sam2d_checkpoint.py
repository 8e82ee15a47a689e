"""2-D checkpoints: SAM's bare state dict and SAM-Med2D's ``{"model": ...}`` are detected and
loaded strictly with the 3-D loader's key report; pickles outside the allow-list are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from neurosam3d.model import CheckpointError, build_model, detect_config, load_checkpoint
from neurosam3d.model.sam2d import SAM2D_CONFIGS, Sam2D, detect_sam2d
from tests.model.conftest import randomise
from tests.model.sam2d.conftest import TOY


@pytest.fixture(scope="module")
def toy() -> Sam2D:
    model = build_model(TOY)
    assert isinstance(model, Sam2D)
    return randomise(model, seed=5)


def _same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize("name", sorted(SAM2D_CONFIGS))
def test_registered_2d_weights_are_detected(name: str) -> None:
    with torch.device("meta"):  # shapes only: detection reads no values
        state_dict = build_model(name).state_dict()
    assert detect_config(state_dict) == (name, SAM2D_CONFIGS[name])


def test_sam3d_weights_are_not_taken_for_2d() -> None:
    assert detect_sam2d(build_model("tiny").state_dict()) is None


@pytest.mark.parametrize("layout", ["bare", "sam_med2d"])
def test_both_release_layouts_load(tmp_path: Path, toy: Sam2D, layout: str) -> None:
    sd = toy.state_dict()
    payload = sd if layout == "bare" else {"model": sd, "epoch": 3, "optimizer": {"lr": 1e-4}}
    path = tmp_path / f"{layout}.pth"
    torch.save(payload, path)
    model = load_checkpoint(path)
    assert isinstance(model, Sam2D)
    assert model.config.encoder_adapters and model.config.encoder_window_size == 3
    _same_weights(model, sd)
    named = load_checkpoint(path, name=TOY)
    _same_weights(named, sd)


def test_registered_name_and_components(tmp_path: Path, toy: Sam2D) -> None:
    path = tmp_path / "toy.pth"
    torch.save(toy.state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, name="sam_med2d_vit_b")
    message = str(err.value)
    assert str(path) in message and "mis-shaped" in message
    # blocks 2-11 (20 keys each, adapters included) are missing; nothing is unexpected
    assert re.search(r"\d+ keys match, 200 missing, 0 unexpected, \d+ mis-shaped", message)
    encoder_only = {k: v for k, v in toy.state_dict().items() if k.startswith("image_encoder.")}
    torch.save(encoder_only, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path, name=TOY)
    partial = load_checkpoint(path, name=TOY, components=("image_encoder",))
    assert torch.equal(partial.image_encoder.pos_embed, toy.image_encoder.pos_embed)


def test_a_pickled_optimizer_beside_the_weights_is_refused(tmp_path: Path, toy: Sam2D) -> None:
    optimizer = torch.optim.Adam(toy.parameters())
    path = tmp_path / "with_optimizer.pth"
    torch.save({"model": toy.state_dict(), "optimizer": optimizer}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)


def test_cli_inspect_reads_the_sam_med2d_layout(tmp_path: Path, toy: Sam2D) -> None:
    from typer.testing import CliRunner

    from neurosam3d.cli import app

    path = tmp_path / "med2d_style.pth"
    torch.save({"model": toy.state_dict(), "epoch": 9}, path)
    result = CliRunner().invoke(app, ["checkpoint", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["format"] == "model" and info["architecture"] == "custom"
    assert info["keys_ok"] and info["metadata"]["epoch"] == 9
    assert info["config"]["encoder_adapters"] is True
    text = CliRunner().invoke(app, ["checkpoint", "inspect", str(path)])
    assert "architecture: custom (input 64 x 64)" in text.output

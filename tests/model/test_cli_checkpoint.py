"""``neurosam3d checkpoint inspect`` and ``convert``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from neurosam3d.cli import app
from neurosam3d.model import Sam3D, build_model, export_checkpoint, read_state_dict
from tests.model.conftest import randomise

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny() -> Sam3D:
    return randomise(build_model("tiny"), seed=3)


def test_inspect_reports_architecture_parameters_and_keys(tmp_path: Path, tiny: Sam3D) -> None:
    path = export_checkpoint(tiny, tmp_path / "tiny.pth", epoch=4)
    result = runner.invoke(app, ["checkpoint", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["architecture"] == "tiny" and info["format"] == "release"
    assert info["num_parameters"] == sum(p.numel() for p in tiny.parameters())
    assert info["keys_ok"] and info["metadata"]["epoch"] == 4

    text = runner.invoke(app, ["checkpoint", "inspect", str(path)])
    assert "architecture: tiny (input 64^3)" in text.output


def test_inspect_flags_key_problems_and_unreadable_files(tmp_path: Path, tiny: Sam3D) -> None:
    sd = dict(tiny.state_dict())
    sd["mask_decoder.surplus"] = torch.zeros(1)
    odd = tmp_path / "odd.pth"
    torch.save(sd, odd)
    result = runner.invoke(app, ["checkpoint", "inspect", str(odd)])
    assert result.exit_code == 1 and "mask_decoder.surplus" in result.output
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    result = runner.invoke(app, ["checkpoint", "inspect", str(broken)])
    assert result.exit_code == 2 and "broken.pth" in result.output


@pytest.mark.parametrize(
    ("suffix", "fmt"), [(".safetensors", "safetensors"), (".ckpt", "lightning")]
)
def test_convert_by_suffix(tmp_path: Path, tiny: Sam3D, suffix: str, fmt: str) -> None:
    src = export_checkpoint(tiny, tmp_path / "release.pth")
    dst = tmp_path / f"converted{suffix}"
    result = runner.invoke(app, ["checkpoint", "convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    contents = read_state_dict(dst)
    assert contents.format == fmt
    for key, value in tiny.state_dict().items():
        assert torch.equal(contents.state_dict[key], value)


def test_convert_needs_a_known_format(tmp_path: Path, tiny: Sam3D) -> None:
    src = export_checkpoint(tiny, tmp_path / "release.pth")
    result = runner.invoke(app, ["checkpoint", "convert", str(src), str(tmp_path / "out.bin")])
    assert result.exit_code == 2 and "--to" in result.output
    result = runner.invoke(
        app, ["checkpoint", "convert", str(src), str(tmp_path / "out.bin"), "--to", "release"]
    )
    assert result.exit_code == 0 and read_state_dict(tmp_path / "out.bin").format == "release"

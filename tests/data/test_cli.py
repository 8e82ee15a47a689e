"""``neurosam3d prepare``: every option documented; config-less and configured runs."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from neurosam3d.cli import app

runner = CliRunner()


def test_help_explains_every_option() -> None:
    result = runner.invoke(app, ["prepare", "--help"], terminal_width=200)
    assert result.exit_code == 0
    import neurosam3d.cli.prepare as module

    params = [p for p in module.prepare_command.__annotations__ if p not in ("return",)]
    for name in params:
        flag = "--" + name.replace("_", "-")
        assert flag in result.output, flag
    # each option line carries help text after its type
    lines = [line for line in result.output.splitlines() if re.search(r"--[a-z-]+", line)]
    assert all(len(line.split()) > 3 for line in lines)


def test_config_less_msd_and_configured_dataset(tmp_path: Path, samples_dir: Path) -> None:
    out = tmp_path / "out"
    root = samples_dir / "msd" / "Task101_SpinalCordSCT"
    result = runner.invoke(
        app,
        ["prepare", "--layout", "msd", "--root", str(root), "--out", str(out), "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["prepare", "--dataset", "sample_brats_style_t2", "--out", str(out), "--strict"]
    )
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest.dataset) == {"Task101_SpinalCordSCT", "SCTBraTSStyle"}


def test_bad_arguments_are_explained(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "give --dataset NAME" in result.output
    result = runner.invoke(app, ["prepare", "--dataset", "nope", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no dataset config" in result.output
    result = runner.invoke(
        app, ["prepare", "--dataset", "kits23", "--out", str(tmp_path), "--raw-root", str(tmp_path)]
    )
    assert result.exit_code != 0 and "raw folder not found" in result.output


def test_strict_fails_when_something_is_quarantined(tmp_path: Path, samples_dir: Path) -> None:
    config = tmp_path / "bad.yaml"
    root = samples_dir / "amos_style"
    config.write_text(
        f"name: X\nlayout: paired\nroot: {root}\nlabels: {{2: two}}\n"  # value 1 is not mapped
    )
    result = runner.invoke(
        app, ["prepare", "--dataset", str(config), "--out", str(tmp_path / "o"), "--strict"]
    )
    assert result.exit_code == 1
    assert "empty_label" in result.output and "unknown_label_value" in result.output

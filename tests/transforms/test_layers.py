"""Layers: transforms is below everything that prepares model inputs; the window machinery
(:mod:`neurosam3d.windows`) is below evaluation and inference; no import cycles where the issue
found them (evaluation -> training, inference -> evaluation, data/config <-> data/layouts)."""

from __future__ import annotations

import pytest

from tests.pipelines.test_stage_code_deps import REPO, code_of


def _packages(module: str) -> set[str]:
    return {p.relative_to(REPO / "neurosam3d").parts[0] for p in code_of(module)}


@pytest.mark.parametrize(
    "module",
    [
        "neurosam3d.transforms",
        "neurosam3d.transforms.geometry",
        "neurosam3d.transforms.resample",
        "neurosam3d.transforms.preprocessing",
    ],
)
def test_transforms_import_nothing_above_them(module: str) -> None:
    above = {"data", "training", "evaluation", "inference", "registry", "model", "store", "cli"}
    assert not _packages(module) & above


@pytest.mark.parametrize(
    "module",
    [
        "neurosam3d.windows",
        "neurosam3d.windows.tiling",
        "neurosam3d.windows.session",
        "neurosam3d.windows.growth",
    ],
)
def test_windows_are_below_evaluation_and_inference(module: str) -> None:
    above = {"evaluation", "inference", "training", "registry", "store", "data", "cli"}
    assert not _packages(module) & above


def test_inference_does_not_import_evaluation() -> None:
    for module in ("neurosam3d.inference", "neurosam3d.inference.segment"):
        packages = _packages(module)
        assert "evaluation" not in packages, module
        assert "windows" in packages, module  # the shared window machinery, from below


def test_evaluation_and_inference_do_not_import_training() -> None:
    for module in ("neurosam3d.evaluation.api", "neurosam3d.inference"):
        assert "training" not in _packages(module), module


def test_data_config_does_not_import_the_layouts() -> None:
    files = {p.relative_to(REPO).as_posix() for p in code_of("neurosam3d.data.config")}
    assert not any(f.startswith("neurosam3d/data/layouts") for f in files)
    layouts = {p.relative_to(REPO).as_posix() for p in code_of("neurosam3d.data.layouts")}
    assert "neurosam3d/data/config.py" in layouts  # the one direction left

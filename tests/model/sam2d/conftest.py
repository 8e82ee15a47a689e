"""Fixtures of the 2-D baseline tests: the official SAM (reference) and the SAM-Med2D contract."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
#: SAM-Med2D's parity contract, copied from the project's shared fixtures (README inside).
MED2D_PARITY = REPO / "tests" / "fixtures" / "sam_med2d_parity"
#: Name under which the official package's modules are loaded (its own ``__init__`` never runs).
REFERENCE_ALIAS = "_segment_anything_reference"


def fixture_weight(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The SAM-Med2D fixture README's deterministic weight for ``key``."""
    z = np.random.default_rng(zlib.crc32(key.encode("utf-8"))).standard_normal(shape)
    z = z.astype(np.float32)
    if key.endswith(".bias"):
        value = 0.02 * z
    elif key.endswith(".weight") and len(shape) == 1:
        value = 1.0 + 0.1 * z
    elif key.endswith("positional_encoding_gaussian_matrix"):
        value = z
    else:
        value = 0.02 * z
    return torch.from_numpy(value)


@pytest.fixture(scope="session")
def official_build_sam() -> ModuleType:
    """``segment_anything.build_sam`` of the official package (test-only dependency).

    The package ``__init__`` imports its predictor, which needs torchvision (not installed: it
    would pull another torch). A bare parent package object pointing at the installed folder
    lets ``build_sam`` and ``modeling`` import through their relative imports without it.
    """
    spec = importlib.util.find_spec("segment_anything")  # locates, does not execute
    assert spec is not None and spec.origin is not None, "segment-anything is a dev dependency"
    if REFERENCE_ALIAS not in sys.modules:
        parent = types.ModuleType(REFERENCE_ALIAS)
        parent.__path__ = [str(Path(spec.origin).parent)]
        sys.modules[REFERENCE_ALIAS] = parent
    return importlib.import_module(f"{REFERENCE_ALIAS}.build_sam")


@pytest.fixture(scope="session")
def med2d_keys() -> dict[str, tuple[int, ...]]:
    """``state_dict_keys.tsv``: key -> shape, in file order."""
    lines = (MED2D_PARITY / "state_dict_keys.tsv").read_text().splitlines()[1:]
    return {key: ast.literal_eval(shape) for key, shape, _ in (ln.split("\t") for ln in lines)}


@pytest.fixture(scope="session")
def med2d_golden() -> dict[str, np.ndarray]:
    with np.load(MED2D_PARITY / "golden.npz") as data:
        return {k: data[k] for k in data.files}


def assert_close(name: str, got: torch.Tensor, expected: np.ndarray, rel: float = 1e-3) -> None:
    """Max abs difference <= ``rel`` x the expected array's max abs value (shapes equal)."""
    got_np = got.detach().float().cpu().numpy()
    assert got_np.shape == expected.shape, f"{name}: shape {got_np.shape} != {expected.shape}"
    scale = float(np.abs(expected).max())
    diff = float(np.abs(got_np - expected).max())
    assert scale > 0, f"{name}: the reference is all zeros"
    assert diff <= rel * scale, f"{name}: max abs diff {diff:.3g} > {rel} x {scale:.3g}"

"""Fixtures of the 2-D baseline tests: the official SAM (reference) and the SAM-Med2D contract."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from neurosam3d.model.sam2d import Sam2DConfig

#: SAM's layout at toy size: 4 x 4 tokens padded into 3 x 3 windows (to 6 x 6), one global block,
#: adapters on; decoder heads 8 (what detection assumes for unregistered weights).
TOY = Sam2DConfig(
    img_size=64,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    encoder_window_size=3,
    encoder_adapters=True,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)

REPO = Path(__file__).resolve().parents[3]
#: SAM-Med2D's parity contract, copied from the project's shared fixtures (README inside).
MED2D_PARITY = REPO / "tests" / "fixtures" / "sam_med2d_parity"
#: Name under which the official package's modules are loaded (its own ``__init__`` never runs).
REFERENCE_ALIAS = "_segment_anything_reference"


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

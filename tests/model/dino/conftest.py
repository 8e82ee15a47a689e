"""Fixtures of the 3DINO backbone tests: the golden parity fixture in tests/fixtures/dino3d_parity.

The fixture's deterministic weights (304 M values) are generated once per session straight into
the backbone's parameters (no second copy), which takes a few seconds.
"""

from __future__ import annotations

import ast
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosam3d.model import build_model
from neurosam3d.model.dino_encoder import DinoVisionTransformer3D

PARITY = Path(__file__).resolve().parents[2] / "fixtures" / "dino3d_parity"


def dino_golden_array(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The fixture README's deterministic weight for backbone key ``key``."""
    z = np.random.default_rng(zlib.crc32(key.encode("utf-8"))).standard_normal(shape)
    z = z.astype(np.float32)
    if key.endswith(".bias"):
        return 0.02 * z
    if key.endswith(".weight") and len(shape) == 1:
        return 1.0 + 0.1 * z
    if key.endswith("gamma"):
        return 0.1 + 0.01 * z
    return 0.02 * z


def fill_golden_backbone(backbone: torch.nn.Module) -> torch.nn.Module:
    """Write the fixture's weights into ``backbone``'s parameters in place."""
    with torch.no_grad():
        for key, tensor in backbone.state_dict().items():
            tensor.copy_(torch.from_numpy(dino_golden_array(key, tuple(tensor.shape))))
    return backbone


@pytest.fixture(scope="session")
def dino_keys() -> dict[str, tuple[int, ...]]:
    """``state_dict_keys.tsv``: key -> shape, in file order."""
    lines = (PARITY / "state_dict_keys.tsv").read_text().splitlines()[1:]
    return {key: ast.literal_eval(shape) for key, shape, _ in (ln.split("\t") for ln in lines)}


@pytest.fixture(scope="session")
def dino_golden() -> dict[str, np.ndarray]:
    with np.load(PARITY / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def dino_input() -> torch.Tensor:
    """The fixture's ``1 x 1 x 112^3`` input."""
    rng = np.random.default_rng(zlib.crc32(b"input"))
    return torch.from_numpy(rng.standard_normal((1, 1, 112, 112, 112)).astype(np.float32))


@pytest.fixture(scope="session")
def dino_backbone() -> DinoVisionTransformer3D:
    """The ``dinov2_vitl3d`` backbone holding the fixture's weights (built on the meta device and
    filled once: no throw-away initialisation of 307 M values)."""
    with torch.device("meta"):
        backbone = build_model("dinov2_vitl3d").image_encoder.backbone
    return fill_golden_backbone(backbone.to_empty(device="cpu")).eval()

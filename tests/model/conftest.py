"""Fixtures of the model tests: the golden parity fixture and the padded reference encoder."""

from __future__ import annotations

import ast
import importlib.util
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from neurosam3d.model import Sam3D, build_model

REPO = Path(__file__).resolve().parents[2]
#: The released SAM-Med3D parity contract, copied from the project's shared fixtures (README inside).
PARITY = REPO / "tests" / "fixtures" / "sam_med3d_parity"


def golden_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The fixture README's deterministic weight for ``key``."""
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
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def released_keys(parity_dir: Path) -> dict[str, tuple[int, ...]]:
    """``state_dict_keys.tsv``: key -> shape, in file order."""
    lines = (parity_dir / "state_dict_keys.tsv").read_text().splitlines()[1:]
    return {key: ast.literal_eval(shape) for key, shape, _ in (ln.split("\t") for ln in lines)}


@pytest.fixture(scope="session")
def golden(parity_dir: Path) -> dict[str, np.ndarray]:
    with np.load(parity_dir / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_state_dict(released_keys: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The fixture's deterministic weights (100.5 M values, a few seconds)."""
    return {key: golden_tensor(key, shape) for key, shape in released_keys.items()}


@pytest.fixture(scope="session")
def golden_model(golden_state_dict: dict[str, torch.Tensor]) -> Sam3D:
    model = build_model("sam_med3d")
    model.load_state_dict(golden_state_dict)
    return model.eval()


@pytest.fixture(scope="session")
def golden_image() -> torch.Tensor:
    rng = np.random.default_rng(zlib.crc32(b"input"))
    return torch.from_numpy(rng.standard_normal((1, 1, 128, 128, 128)).astype(np.float32))


@pytest.fixture(scope="session")
def golden_embedding(golden_model: Sam3D, golden_image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return golden_model.image_encoder(golden_image)


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    """``benchmarks/encoder.py``: the straightforward padded encoder used as the oracle."""
    spec = importlib.util.spec_from_file_location(
        "encoder_benchmark", REPO / "benchmarks" / "encoder.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Non-trivial weights everywhere (the default init leaves relative positions at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=gen) * scale
            tensor.copy_(1.0 + noise if name.endswith(("norm1.weight", "norm2.weight")) else noise)
    return model.eval()

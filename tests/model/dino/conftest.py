"""Fixtures of the 3DINO backbone tests: the golden parity fixture in tests/fixtures/dino3d_parity.

The fixture's deterministic weights (304 M values) are generated once per session straight into
the backbone's parameters (no second copy), which takes a few seconds.
"""

from __future__ import annotations

import ast
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosam3d.model import MODEL_CONFIGS, build_model
from neurosam3d.model.dino_encoder import DinoVisionTransformer3D

PARITY = Path(__file__).resolve().parents[2] / "fixtures" / "dino3d_parity"
#: ``dinov2_vitl3d``'s layout (class token, LayerScale, 7^3 position embedding, chunked blocks)
#: at a tiny width and a 64^3 input: cheap CPU tests of the code paths
SMALL_DINO = replace(
    MODEL_CONFIGS["dinov2_vitl3d"],
    img_size=64,
    encoder_embed_dim=64,
    encoder_depth=4,
    encoder_num_heads=4,
    encoder_block_chunks=2,
    prompt_embed_dim=48,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


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


def teacher_checkpoint(backbone: torch.nn.Module, path: Path) -> Path:
    """Write ``backbone``'s weights as a 3DINO pretraining checkpoint: ``teacher`` holds
    ``module.backbone.*`` beside ``module.dino_head.*`` and ``module.ibot_head.*`` heads."""
    teacher = {f"module.backbone.{k}": v for k, v in backbone.state_dict().items()}
    for head in ("dino_head", "ibot_head"):
        teacher[f"module.{head}.mlp.0.weight"] = torch.zeros(8, 4)
        teacher[f"module.{head}.last_layer.weight_g"] = torch.ones(16, 1)
    torch.save({"teacher": teacher}, path)
    return path


@pytest.fixture(scope="session")
def dino_teacher_file(dino_backbone: DinoVisionTransformer3D, tmp_path_factory) -> Path:
    """The fixture's weights as a 3DINO teacher checkpoint (1.2 GB, in a temporary folder)."""
    return teacher_checkpoint(dino_backbone, tmp_path_factory.mktemp("dino") / "teacher.pth")

"""SAM-Med2D ViT-B against its golden contract (tests/fixtures/sam_med2d_parity/README.md).

Tolerance (the README's): each array within 1e-3 x its max absolute value. The adapter's skip
adds the un-gated tokens, as the original ``Adapter_Layer`` and the golden numbers do (the
shared original of the README said ``c + s``; see ``neurosam3d.model.sam2d.image_encoder.Adapter``).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from neurosam3d.model import build_model
from neurosam3d.model.sam2d import Sam2D
from tests.model.conftest import golden_tensor
from tests.model.sam2d.conftest import assert_close


@pytest.fixture(scope="module")
def med2d(med2d_keys: dict[str, tuple[int, ...]]) -> Sam2D:
    model = build_model("sam_med2d_vit_b")
    assert isinstance(model, Sam2D)
    model.load_state_dict({k: golden_tensor(k, shape) for k, shape in med2d_keys.items()})
    return model.eval()


@pytest.fixture(scope="module")
def med2d_embedding(med2d: Sam2D) -> torch.Tensor:
    rng = np.random.default_rng(zlib.crc32(b"input"))
    image = torch.from_numpy(rng.standard_normal((1, 3, 256, 256)).astype(np.float32))
    with torch.inference_mode():
        return med2d.image_encoder(image)


def test_keys_and_shapes_are_exactly_the_fixtures(
    med2d_keys: dict[str, tuple[int, ...]],
) -> None:
    with torch.device("meta"):  # shapes only
        model = build_model("sam_med2d_vit_b")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == med2d_keys
    assert list(got) == list(med2d_keys)  # same order as the release
    assert sum(".Adapter." in k for k in got) == 12 * 6
    assert model.img_size == 256 and model.low_res_size == 64


def test_embedding_and_two_prompt_steps_match_the_golden_arrays(
    med2d: Sam2D, med2d_embedding: torch.Tensor, med2d_golden: dict[str, np.ndarray]
) -> None:
    g = med2d_golden
    assert_close("image_embedding", med2d_embedding, g["image_embedding"])
    points = torch.tensor([[[100.0, 140.0]]])
    labels = torch.tensor([[1]])
    with torch.inference_mode():
        assert_close("dense_pe", med2d.prompt_encoder.get_dense_pe(), g["dense_pe"])
        sparse, dense = med2d.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        assert_close("step1_sparse", sparse, g["step1_sparse"])
        assert_close("step1_dense", dense, g["step1_dense"])
        masks, iou = med2d.mask_decoder(
            image_embeddings=med2d_embedding,
            image_pe=med2d.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        assert_close("step1_masks", masks, g["step1_masks"])
        assert_close("step1_iou", iou, g["step1_iou"])
        best = masks[:, int(iou[0].argmax())][:, None]
        points2 = torch.tensor([[[100.0, 140.0], [30.0, 200.0]]])
        labels2 = torch.tensor([[1, 0]])
        masks2, iou2 = med2d.predict_masks(
            med2d_embedding, points2, labels2, mask_input=best, multimask=False
        )
    assert_close("step2_masks", masks2, g["step2_masks"])
    assert_close("step2_iou", iou2, g["step2_iou"])

"""Predictor2D on a real CT slice: one embedding per slice, SAM's resize/pad/coordinate rules."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurosam3d.model import build_model
from neurosam3d.model.sam2d import Predictor2D, Sam2D
from neurosam3d.model.sam2d.predictor import preprocess_shape
from tests.conftest import REAL_VOLUMES
from tests.model.conftest import randomise
from tests.model.sam2d.conftest import TOY


@pytest.fixture(scope="module")
def ct_slice() -> torch.Tensor:
    """Axial slice 60 of the shipped CT (122 x 101), window [-200, 300] HU -> 0-255, 3 channels."""
    volume = np.asarray(nib.load(REAL_VOLUMES["ct"]).dataobj, dtype=np.float32)
    hu = np.clip(volume[:, :, 60], -200.0, 300.0)
    pixels = torch.from_numpy((hu + 200.0) / 500.0 * 255.0)
    return pixels.expand(3, -1, -1).contiguous()


@pytest.fixture(scope="module")
def model() -> Sam2D:
    built = build_model(TOY)
    assert isinstance(built, Sam2D)
    return randomise(built, seed=23, scale=0.1)


def test_preprocess_shape_is_sams_rounding() -> None:
    assert preprocess_shape(122, 101, 64) == (64, 53)  # 101 * 64 / 122 = 52.98
    assert preprocess_shape(100, 80, 1024) == (1024, 819)  # 819.2
    assert preprocess_shape(512, 512, 256) == (256, 256)


def test_set_image_once_then_prompt_steps(model: Sam2D, ct_slice: torch.Tensor) -> None:
    calls = []
    hook = model.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        predictor = Predictor2D(model)
        predictor.set_image(ct_slice)
        assert predictor.input_size == (64, 53) and predictor.original_size == (122, 101)
        points, labels = torch.tensor([[[50.0, 61.0]]]), torch.tensor([[1]])
        first = predictor.predict(points, labels, multimask=True)
        best = first.low_res_logits[:, int(first.iou[0].argmax())][:, None]
        second = predictor.predict(
            torch.tensor([[[50.0, 61.0], [10.0, 100.0]]]), torch.tensor([[1, 0]]), best
        )
    finally:
        hook.remove()
    assert len(calls) == 1  # one embedding for every prompt step of the slice
    assert first.low_res_logits.shape == (1, 3, 16, 16) and first.iou.shape == (1, 3)
    assert second.mask.shape == (1, 1, 122, 101) and second.mask.dtype == torch.bool
    assert torch.equal(second.mask, second.probabilities > 0.5)

    # The same step by hand: resize to 64 x 53, normalise, pad, clicks scaled by (53/101, 64/122).
    x = F.interpolate(
        ct_slice[None], (64, 53), mode="bilinear", align_corners=False, antialias=True
    )
    x = F.pad((x - model.pixel_mean) / model.pixel_std, (0, 11, 0, 0))
    with torch.inference_mode():
        emb = model.image_encoder(x)
        scaled = torch.tensor([[[50.0 * 53 / 101, 61.0 * 64 / 122]]])
        logits, iou = model.predict_masks(emb, scaled, labels, multimask=True)
    assert torch.allclose(first.low_res_logits, logits, atol=1e-5)
    assert torch.allclose(first.iou, iou, atol=1e-6)


def test_set_embedding_decodes_each_prompt_set_against_its_own_slice(
    model: Sam2D, ct_slice: torch.Tensor
) -> None:
    """Two slices encoded once each, decoded in one batch: as each decoded on its own."""
    other = ct_slice.flip(-1).contiguous()
    points, labels = torch.tensor([[[50.0, 61.0]], [[20.0, 30.0]]]), torch.tensor([[1], [1]])
    alone, embeddings = [], []
    for b, image in enumerate((ct_slice, other)):
        predictor = Predictor2D(model)
        predictor.set_image(image)
        embeddings.append(predictor.embedding)
        alone.append(predictor.predict(points[b : b + 1], labels[b : b + 1], multimask=True))
    batched = Predictor2D(model)
    batched.set_embedding(torch.cat(embeddings), (122, 101))
    assert batched.input_size == (64, 53)
    together = batched.predict(points, labels, multimask=True)
    for b in range(2):
        assert torch.allclose(together.low_res_logits[b], alone[b].low_res_logits[0], atol=1e-5)
        assert torch.allclose(together.probabilities[b], alone[b].probabilities[0], atol=1e-5)
    # the two slices decode differently: far beyond the tolerance above
    assert (together.low_res_logits[0] - together.low_res_logits[1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"an embedding is B x E x 4 x 4, got \(1, 32, 5, 5\)"):
        batched.set_embedding(torch.zeros(1, 32, 5, 5), (122, 101))


def test_bad_prompts_and_images_are_named(model: Sam2D, ct_slice: torch.Tensor) -> None:
    predictor = Predictor2D(model)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(torch.zeros(1, 1, 2), torch.ones(1, 1))
    with pytest.raises(ValueError, match=r"3 x H x W or H x W image, got \(4, 8, 8\)"):
        predictor.set_image(torch.zeros(4, 8, 8))
    broken = ct_slice.clone()
    broken[0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        predictor.set_image(broken)
    predictor.set_image(ct_slice[0])  # H x W grey slice
    with pytest.raises(ValueError, match=r"B x N x 2"):
        predictor.predict(torch.zeros(1, 1, 3), torch.ones(1, 1))
    with pytest.raises(ValueError, match=r"mask_input must be B x 1 x 16 x 16"):
        predictor.predict(None, None, mask_input=torch.zeros(1, 1, 8, 8))
    box = predictor.predict(None, None, box=torch.tensor([[10.0, 20.0, 60.0, 90.0]]))
    assert box.mask.shape == (1, 1, 122, 101)

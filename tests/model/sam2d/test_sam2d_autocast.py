"""bf16 autocast runs the 2-D model end to end (padded windows, global block, adapters) and
stays close to fp32; relative-position bias and Fourier phases are kept in fp32."""

from __future__ import annotations

import pytest
import torch

from neurosam3d.model import build_model
from neurosam3d.model.sam2d import Sam2D
from tests.model.conftest import randomise
from tests.model.sam2d.conftest import TOY


def _run(model: Sam2D, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    emb = model.image_encoder(image)
    points, labels = torch.tensor([[[20.0, 41.0]]]), torch.tensor([[1]])
    masks, iou = model.predict_masks(emb, points, labels, multimask=True)
    masks2, iou2 = model.predict_masks(emb, points, labels, masks[:, :1], multimask=False)
    return emb, masks, iou, masks2, iou2


def test_bf16_autocast_matches_fp32() -> None:
    model = build_model(TOY)
    assert isinstance(model, Sam2D)
    model = randomise(model, seed=11, scale=0.1)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        reference = _run(model, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = _run(model, image)
    for ref, got in zip(reference, low, strict=True):
        assert ref.dtype == torch.float32
        assert torch.isfinite(got).all()
        scale = float(ref.abs().max())
        # bf16 keeps 8 mantissa bits: a few percent of the range after a dozen layers
        assert float((got.float() - ref).abs().max()) <= 0.05 * scale


def test_wrong_input_size_is_named() -> None:
    model = build_model(TOY)
    with pytest.raises(ValueError, match=r"expects B x 3 x 64 x 64 input, got \(1, 3, 32, 32\)"):
        model.image_encoder(torch.zeros(1, 3, 32, 32))

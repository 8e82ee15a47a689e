"""Predictor: one embedding, many click sets, batched targets, shapes and validation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from neurosam3d.model import MODEL_CONFIGS, Predictor, Sam3D, build_model
from tests.model.conftest import randomise


@pytest.fixture(scope="module")
def tiny() -> Sam3D:
    return randomise(build_model("tiny"), seed=11, scale=0.05)


@pytest.fixture
def volume() -> torch.Tensor:
    return torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))


def test_predictor_reproduces_the_golden_clicks(
    golden_model: Sam3D, golden_image: torch.Tensor, golden: dict[str, np.ndarray]
) -> None:
    predictor = Predictor(golden_model)
    predictor.set_image(golden_image)
    previous = None
    for step in (1, 2, 3):
        out = predictor.predict(
            torch.from_numpy(golden[f"click{step}_points"]),
            torch.from_numpy(golden[f"click{step}_labels"]),
            mask_input=previous,
        )
        expected = golden[f"click{step}_low_res_logits"]
        assert np.abs(out.low_res_logits.numpy() - expected).max() <= 1e-4
        assert out.probabilities.shape == (1, 1, 128, 128, 128)
        previous = out.low_res_logits


def test_embedding_is_computed_once(
    tiny: Sam3D, volume: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = tiny.image_encoder.forward
    monkeypatch.setattr(tiny.image_encoder, "forward", lambda x: calls.append(1) or original(x))
    predictor = Predictor(tiny)
    predictor.set_image(volume)
    for n in (1, 2, 3):
        predictor.predict(torch.full((1, n, 3), 30.0), torch.ones(1, n, dtype=torch.long))
    assert len(calls) == 1


def test_batched_targets_equal_one_by_one(tiny: Sam3D, volume: torch.Tensor) -> None:
    predictor = Predictor(tiny)
    predictor.set_image(volume)
    points = torch.tensor([[[10.0, 20.0, 30.0], [40.0, 41.0, 42.0]], [[5.0, 6.0, 7.0], [9, 9, 9]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    batch = predictor.predict(points, labels, multimask=True)
    assert batch.low_res_logits.shape == (2, 3, 16, 16, 16)
    assert batch.probabilities.shape == batch.mask.shape == (2, 3, 64, 64, 64)
    assert batch.iou.shape == (2, 3) and batch.mask.dtype == torch.bool
    assert torch.equal(batch.mask, batch.probabilities > 0.5)
    for target in (0, 1):
        one = predictor.predict(
            points[target : target + 1], labels[target : target + 1], multimask=True
        )
        torch.testing.assert_close(batch.low_res_logits[target : target + 1], one.low_res_logits)
        torch.testing.assert_close(batch.iou[target : target + 1], one.iou)


def test_mask_feedback_changes_the_prediction(tiny: Sam3D, volume: torch.Tensor) -> None:
    predictor = Predictor(tiny)
    predictor.set_image(volume)
    points, labels = torch.tensor([[[32.0, 32.0, 32.0]]]), torch.tensor([[1]])
    first = predictor.predict(points, labels)
    again = predictor.predict(points, labels, mask_input=first.low_res_logits)
    assert not torch.allclose(first.low_res_logits, again.low_res_logits)
    full = tiny.upscale_logits(first.low_res_logits, 64)
    torch.testing.assert_close(first.probabilities, torch.sigmoid(full))


def test_box_prompts_need_a_box_capable_model(volume: torch.Tensor) -> None:
    box = torch.tensor([[10.0, 10.0, 10.0, 40.0, 40.0, 40.0]])
    released_style = Predictor(build_model("tiny"))
    released_style.set_image(volume)
    with pytest.raises(ValueError, match="no box embeddings"):
        released_style.predict(None, None, box=box)
    boxed = Predictor(build_model(replace(MODEL_CONFIGS["tiny"], box_prompts=True)))
    boxed.set_image(volume)
    out = boxed.predict(torch.tensor([[[20.0, 20.0, 20.0]]]), torch.tensor([[1]]), box=box)
    assert out.low_res_logits.shape == (1, 1, 16, 16, 16)
    only_box = boxed.predict(None, None, box=box)
    assert not torch.allclose(out.low_res_logits, only_box.low_res_logits)


def test_invalid_calls_are_rejected(tiny: Sam3D, volume: torch.Tensor) -> None:
    predictor = Predictor(tiny)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="model input size"):
        predictor.set_image(torch.zeros(1, 1, 32, 64, 64))
    predictor.set_image(volume)
    with pytest.raises(ValueError, match="do not match"):
        predictor.predict(torch.zeros(1, 2, 3), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"B x 1 x 16\^3"):
        predictor.predict(
            torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.long), torch.zeros(1, 1, 8, 8, 8)
        )
    predictor.reset_image()
    assert not predictor.is_image_set

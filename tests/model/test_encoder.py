"""The fast image encoder equals the straightforward padded computation, in value and gradient."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

import pytest
import torch

from neurosam3d.model import MODEL_CONFIGS, ModelConfig, build_model
from neurosam3d.model.image_encoder import Attention3D
from tests.model.conftest import randomise

TINY = MODEL_CONFIGS["tiny"]
# The released geometry (8^3 tokens in one 14^3 window, 128^3 input) at a tiny width.
NARROW_RELEASE = replace(
    MODEL_CONFIGS["sam_med3d"],
    encoder_embed_dim=48,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    prompt_embed_dim=48,
)
GEOMETRIES = {
    "tiny (4^3 tokens in a padded 6^3 window)": TINY,
    "released geometry (8^3 in 14^3)": NARROW_RELEASE,
    "window divides the grid (4^3 in 2^3 windows)": replace(TINY, encoder_window_size=2),
    "window equals the grid": replace(TINY, encoder_window_size=4),
}


@pytest.mark.parametrize("cfg", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_fast_encoder_equals_padded_reference(cfg: ModelConfig, reference: ModuleType) -> None:
    model = randomise(build_model(cfg))
    image = torch.randn((2, 1) + (cfg.img_size,) * 3, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = model.image_encoder(image)
        ref = reference.reference_encoder(model.image_encoder, image)
    assert ours.shape == (2, cfg.prompt_embed_dim) + (cfg.embedding_size,) * 3
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)


def test_padded_keys_matter(reference: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard on the equality test: without the folded padded keys the result is far off."""
    model = randomise(build_model(TINY))
    image = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(
        Attention3D, "_fold_padding", lambda self, q, k, v, bias, terms: (k, v, bias)
    )
    with torch.inference_mode():
        ref = reference.reference_encoder(model.image_encoder, image)
        without = model.image_encoder(image)
    assert (ref - without).abs().max() > 1e-2


def test_gradients_match_the_reference(reference: ModuleType) -> None:
    model = randomise(build_model(TINY)).train()
    image = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(3))
    weight = torch.randn(1, 96, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    grads = []
    for forward in (
        model.image_encoder,
        lambda x: reference.reference_encoder(model.image_encoder, x),
    ):
        model.zero_grad()
        (forward(image) * weight).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.image_encoder.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=2e-4, rtol=1e-3, msg=name)
    assert grads[0]["blocks.0.attn.rel_pos_h"].abs().sum() > 0


def test_bf16_autocast_runs_and_stays_close() -> None:
    model = randomise(build_model(TINY), scale=0.05)
    image = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(5))
    seen = []
    model.image_encoder.blocks[0].attn.proj.register_forward_hook(
        lambda _m, inputs, _out: seen.append(inputs[0].dtype)
    )
    with torch.inference_mode():
        full = model.image_encoder(image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model.image_encoder(image)
            logits, iou = model.predict_masks(
                half, torch.tensor([[[10.0, 20.0, 30.0]]]), torch.tensor([[1]])
            )
    assert seen == [torch.float32, torch.bfloat16]  # attention itself ran in bf16
    assert torch.isfinite(logits).all() and torch.isfinite(iou).all()
    assert (half.float() - full).abs().max() < 0.05 * full.abs().max()


def test_wrong_input_size_is_rejected() -> None:
    model = build_model(TINY)
    with pytest.raises(ValueError, match=r"64\^3"):
        model.image_encoder(torch.zeros(1, 1, 32, 32, 32))

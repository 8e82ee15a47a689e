"""The 3DINO encoder's fast paths: bf16 autocast and activation checkpointing keep the result."""

from __future__ import annotations

import torch

from neurosam3d.model import build_model
from tests.model.dino.conftest import SMALL_DINO

SMALL = SMALL_DINO


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(SMALL)


def test_bf16_autocast_stays_close_to_fp32() -> None:
    model = _model().eval()
    image = torch.randn(2, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model.image_encoder.backbone.patch_tokens(image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.image_encoder.backbone.patch_tokens(image)
    assert not torch.equal(low.float(), ref)  # the blocks did run in bf16 (final norm is fp32)
    assert ref.shape == low.shape == (2, 4**3, 64)  # 4^3 grid from a 7^3 position embedding
    # bf16 keeps ~3 significant digits; outputs are layer-normed (O(1))
    assert (low.float() - ref).abs().max() < 0.1
    assert (low.float() - ref).abs().mean() < 0.02


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    image = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    grads = []
    for enabled in (False, True):
        model = _model().train()
        model.image_encoder.set_activation_checkpointing(enabled)
        model.image_encoder(image).square().mean().backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert "image_encoder.backbone.blocks.1.3.attn.qkv.weight" in grads[0]
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, atol=1e-6, rtol=1e-5, msg=key)


def test_export_and_load_detect_the_dino_architecture(tmp_path) -> None:
    from neurosam3d.model import export_checkpoint, load_checkpoint

    model = _model().eval()
    path = export_checkpoint(model, tmp_path / "dino.ckpt", fmt="lightning")
    loaded = load_checkpoint(path)
    assert loaded.config.encoder_type == "dinov2"
    assert loaded.config.encoder_block_chunks == 2
    image = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(loaded.image_encoder(image), model.image_encoder(image))


def test_fused_attention_equals_the_3dino_reference(reference) -> None:
    """Ours (SDPA) vs ``benchmarks/encoder.py``'s 3DINO forward (explicit softmax attention)."""
    model = _model().eval()
    image = torch.randn(2, 1, 64, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ours = model.image_encoder(image)
        ref = reference.reference_dino_encoder(model.image_encoder, image)
    assert ours.shape == (2, 48, 4, 4, 4)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)

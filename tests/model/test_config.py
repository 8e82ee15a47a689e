"""Configuration registry and validation."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from neurosam3d.model import MODEL_CONFIGS, ModelConfig, build_model, get_config


def test_geometry_of_the_named_configurations() -> None:
    released = get_config("sam_med3d")
    assert (released.img_size, released.embedding_size, released.low_res_size) == (128, 8, 32)
    tiny = get_config("tiny")
    assert (tiny.img_size, tiny.embedding_size, tiny.low_res_size) == (64, 4, 16)
    assert tiny.encoder_window_size > tiny.embedding_size  # one padded window, like the release


def test_config_round_trips_through_plain_dicts() -> None:
    for cfg in MODEL_CONFIGS.values():
        data = asdict(cfg)  # what the registry stores as JSON (lists for tuples)
        data["encoder_global_attn_indexes"] = list(data["encoder_global_attn_indexes"])
        assert cfg.to_dict() == data
        data["encoder_global_attn_indexes"] = tuple(data["encoder_global_attn_indexes"])
        assert ModelConfig(**data) == cfg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"img_size": 100}, "not a multiple of patch_size"),
        ({"encoder_window_size": 3}, "neither divides nor covers"),
        ({"prompt_embed_dim": 100}, "divisible by 3"),
        ({"encoder_global_attn_indexes": (7,)}, "out of range"),
        ({"encoder_num_heads": 5}, "divisible by encoder_num_heads"),
    ],
)
def test_invalid_configurations_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(MODEL_CONFIGS["tiny"], **change)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="sam_med3d, small, tiny"):
        build_model("vit_h")


def test_tiny_training_step_reaches_every_part() -> None:
    """Two clicks with mask feedback, as the training loop does; gradients reach all parts."""
    torch.manual_seed(0)
    model = build_model("tiny").train()
    image = torch.randn(2, 1, 64, 64, 64)
    target = (torch.rand(2, 1, 64, 64, 64) > 0.5).float()
    points, labels = torch.full((2, 1, 3), 32.0), torch.ones(2, 1, dtype=torch.long)
    embedding = model.image_encoder(image)
    low, _ = model.predict_masks(embedding, points, labels)
    low, iou = model.predict_masks(embedding, points, labels, mask_input=low.detach())
    assert low.shape == (2, 1, 16, 16, 16) and iou.shape == (2, 1)
    full = model.upscale_logits(low, 64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(full, target) + iou.square().mean()
    loss.backward()
    for part in (
        model.image_encoder.blocks[0].attn.rel_pos_d,
        model.image_encoder.patch_embed.proj.weight,
        model.prompt_encoder.mask_downscaling[0].weight,
        model.prompt_encoder.point_embeddings[1].weight,
        model.mask_decoder.iou_prediction_head.layers[0].weight,
    ):
        assert part.grad is not None and part.grad.abs().sum() > 0

"""Recognise a 2-D SAM / SAM-Med2D state dict and infer its :class:`Sam2DConfig`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import torch

from neurosam3d.model.sam2d.config import SAM2D_CONFIGS, Sam2DConfig
from neurosam3d.model.statedict import count_groups, prompt_decoder_fields

logger = logging.getLogger(__name__)


def is_sam2d_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a 2-D encoder: a 4-D patch convolution and per-block ``rel_pos_h`` without
    the 3-D model's ``rel_pos_d``."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    return (
        patch is not None
        and patch.ndim == 4
        and "image_encoder.blocks.0.attn.rel_pos_h" in state_dict
        and "image_encoder.blocks.0.attn.rel_pos_d" not in state_dict
    )


def detect_sam2d(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, Sam2DConfig] | None:
    """The registered 2-D name and configuration the weights fit (``"custom"`` if none), or
    ``None`` when they are not a 2-D SAM. Raises ``KeyError``/``IndexError``/``ValueError`` for
    a 2-D state dict missing what the architecture needs (the caller words the error)."""
    sd = state_dict
    if not is_sam2d_state_dict(sd):
        return None
    embed_dim, _, patch = sd["image_encoder.patch_embed.proj.weight"].shape[:3]
    grid = sd["image_encoder.pos_embed"].shape[1]
    depth = count_groups(sd, r"image_encoder\.blocks\.(\d+)\.")
    rows = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
    windows = {(r + 1) // 2 for r in rows if r != 2 * grid - 1}
    adapter = sd.get("image_encoder.blocks.0.Adapter.channel.0.weight")
    detected = Sam2DConfig(
        img_size=grid * patch,
        patch_size=patch,
        encoder_embed_dim=embed_dim,
        encoder_depth=depth,
        encoder_num_heads=embed_dim // sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1],
        encoder_mlp_ratio=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        encoder_global_attn_indexes=tuple(i for i, r in enumerate(rows) if r == 2 * grid - 1),
        encoder_window_size=windows.pop() if len(windows) == 1 else 0,
        encoder_adapters=adapter is not None,
        adapter_ratio=adapter.shape[0] / embed_dim if adapter is not None else 0.25,
        **prompt_decoder_fields(sd),
    )
    for name, cfg in SAM2D_CONFIGS.items():
        if replace(detected, decoder_num_heads=cfg.decoder_num_heads) == cfg:
            return name, cfg
    logger.warning(
        "2-D weights match no registered configuration; assuming %d decoder heads",
        detected.decoder_num_heads,
    )
    return "custom", detected

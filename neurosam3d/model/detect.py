"""Infer a :class:`ModelConfig` from a state dict's key names and shapes."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace

import torch

from neurosam3d.model.config import MODEL_CONFIGS, ModelConfig
from neurosam3d.model.formats import CheckpointError
from neurosam3d.model.sam2d import Sam2DConfig, detect_sam2d

logger = logging.getLogger(__name__)


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state_dict if (m := rx.match(k))})


def detect_config(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[str, ModelConfig | Sam2DConfig]:
    """Infer the configuration from key names and shapes.

    Returns the registered name whose configuration matches (``"custom"`` if none). The decoder's
    head count leaves no trace in the weights: it is taken from the matching registered
    configuration, else the released model's 8. 2-D SAM / SAM-Med2D weights give a
    :class:`~neurosam3d.model.sam2d.Sam2DConfig` (:func:`~neurosam3d.model.sam2d.detect_sam2d`).
    """
    sd = state_dict
    try:
        two_d = detect_sam2d(sd)
        if two_d is not None:
            return two_d
        embed_dim, in_chans, patch = sd["image_encoder.patch_embed.proj.weight"].shape[:3]
        grid = sd["image_encoder.pos_embed"].shape[1]
        depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
        rel_rows = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape[0] for i in range(depth)]
        windows = {(r + 1) // 2 for r in rel_rows if r != 2 * grid - 1}
        prompt_dim = sd["image_encoder.neck.0.weight"].shape[0]
        cross_dim = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
        detected = ModelConfig(
            img_size=grid * patch,
            in_chans=in_chans,
            patch_size=patch,
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // sd["image_encoder.blocks.0.attn.rel_pos_d"].shape[1],
            encoder_mlp_ratio=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
            encoder_global_attn_indexes=tuple(
                i for i, r in enumerate(rel_rows) if r == 2 * grid - 1
            ),
            encoder_window_size=windows.pop() if len(windows) == 1 else 0,
            prompt_embed_dim=prompt_dim,
            mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            box_prompts="prompt_encoder.point_embeddings.2.weight" in sd,
            decoder_depth=_count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
            decoder_mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            decoder_attention_downsample_rate=prompt_dim // cross_dim.shape[0],
            num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
            iou_head_depth=_count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise CheckpointError(
            f"cannot detect the architecture from the weights ({type(exc).__name__}: {exc}); "
            f"pass the configuration name explicitly (one of {sorted(MODEL_CONFIGS)})"
        ) from None
    for name, cfg in MODEL_CONFIGS.items():
        if replace(detected, decoder_num_heads=cfg.decoder_num_heads) == cfg:
            return name, cfg
    logger.warning(
        "weights match no registered configuration; assuming %d decoder heads",
        detected.decoder_num_heads,
    )
    return "custom", detected

"""Architecture fields read from SAM-style state-dict keys, shared by 3-D and 2-D detection.

The prompt encoder and mask decoder have SAM's key names in every model here, so the fields
they determine are read the same way for SAM-Med3D (:mod:`neurosam3d.model.detect`) and SAM /
SAM-Med2D (:mod:`neurosam3d.model.sam2d.detect`) weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch


def count_groups(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many distinct values ``pattern``'s first group takes over the keys (e.g. block
    indices of ``image_encoder\\.blocks\\.(\\d+)\\.``)."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in state_dict if (m := rx.match(k))})


def prompt_decoder_fields(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``prompt_embed_dim``, ``mask_in_chans`` and the mask decoder's sizes from the weights.

    Raises ``KeyError``/``IndexError`` for a state dict missing a key they need (the callers
    word the error). The decoder's head count leaves no trace in the weights.
    """
    sd = state_dict
    prompt_dim = sd["image_encoder.neck.0.weight"].shape[0]
    cross = sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"]
    return {
        "prompt_embed_dim": prompt_dim,
        "mask_in_chans": sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        "decoder_depth": count_groups(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        "decoder_mlp_dim": sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        "decoder_attention_downsample_rate": prompt_dim // cross.shape[0],
        "num_multimask_outputs": sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        "iou_head_hidden_dim": sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        "iou_head_depth": count_groups(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
    }

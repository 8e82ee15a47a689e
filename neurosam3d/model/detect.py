"""Infer a :class:`ModelConfig` from a state dict's key names and shapes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from neurosam3d.model.config import MODEL_CONFIGS, ModelConfig
from neurosam3d.model.formats import CheckpointError
from neurosam3d.model.sam2d import Sam2DConfig, detect_sam2d
from neurosam3d.model.statedict import count_groups, prompt_decoder_fields

logger = logging.getLogger(__name__)


def detect_config(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[str, ModelConfig | Sam2DConfig]:
    """Infer the configuration from key names and shapes.

    Returns the registered name whose configuration matches (``"custom"`` if none). SAM-Med3D
    encoders are recognised by ``image_encoder.blocks.*``, 3DINO ones (``"dinov2_vitl3d"``) by
    ``image_encoder.backbone.*``. The decoder's head count, a 3DINO encoder's head count and
    the input scaling leave no trace in the weights: they are taken from the matching registered
    configuration, else the released model's 8 decoder heads, 64-channel encoder heads and
    z-score scaling. 2-D SAM / SAM-Med2D weights give a
    :class:`~neurosam3d.model.sam2d.Sam2DConfig` (:func:`~neurosam3d.model.sam2d.detect_sam2d`).
    """
    sd = state_dict
    try:
        two_d = detect_sam2d(sd)
        if two_d is not None:
            return two_d
        encoder = _dino_encoder(sd) if _DINO_KEY in sd else _sam_encoder(sd)
        detected = ModelConfig(
            **encoder,
            **prompt_decoder_fields(sd),
            box_prompts="prompt_encoder.point_embeddings.2.weight" in sd,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise CheckpointError(
            f"cannot detect the architecture from the weights ({type(exc).__name__}: {exc}); "
            f"pass the configuration name explicitly (one of {sorted(MODEL_CONFIGS)})"
        ) from None
    for name, cfg in MODEL_CONFIGS.items():
        if cfg.encoder_type != detected.encoder_type:
            continue
        unseen = _NOT_IN_WEIGHTS + (("encoder_num_heads",) if _DINO_KEY in sd else ())
        if replace(detected, **{f: getattr(cfg, f) for f in unseen}) == cfg:
            return name, cfg
    logger.warning(
        "weights match no registered configuration; assuming %d decoder heads",
        detected.decoder_num_heads,
    )
    return "custom", detected


#: fields that leave no trace in the weights: taken from the matching registered configuration
_NOT_IN_WEIGHTS = ("decoder_num_heads", "input_scaling")
_DINO_KEY = "image_encoder.backbone.pos_embed"


def _sam_encoder(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Encoder fields of a SAM-Med3D ViT (relative positions reveal heads and windows)."""
    embed_dim, in_chans, patch = sd["image_encoder.patch_embed.proj.weight"].shape[:3]
    grid = sd["image_encoder.pos_embed"].shape[1]
    depth = count_groups(sd, r"image_encoder\.blocks\.(\d+)\.")
    rel_rows = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape[0] for i in range(depth)]
    windows = {(r + 1) // 2 for r in rel_rows if r != 2 * grid - 1}
    return {
        "img_size": grid * patch,
        "in_chans": in_chans,
        "patch_size": patch,
        "encoder_embed_dim": embed_dim,
        "encoder_depth": depth,
        "encoder_num_heads": embed_dim // sd["image_encoder.blocks.0.attn.rel_pos_d"].shape[1],
        "encoder_mlp_ratio": sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        "encoder_global_attn_indexes": tuple(
            i for i, r in enumerate(rel_rows) if r == 2 * grid - 1
        ),
        "encoder_window_size": windows.pop() if len(windows) == 1 else 0,
    }


def _dino_encoder(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Encoder fields of a 3DINO backbone (``image_encoder.backbone.*``).

    The input size is the position embedding's grid times the patch (a model run at another
    size resizes it; pass that configuration explicitly). The head count is not in the weights:
    64-channel heads (ViT-L's 16) unless a registered configuration matches.
    """
    prefix = "image_encoder.backbone."
    embed_dim, in_chans, patch = sd[prefix + "patch_embed.proj.weight"].shape[:3]
    tokens = sd[prefix + "pos_embed"].shape[1] - 1
    grid = round(tokens ** (1 / 3))
    if grid**3 != tokens:
        raise ValueError(f"pos_embed holds {tokens} patch positions, not a cube")
    chunks = count_groups(sd, r"image_encoder\.backbone\.blocks\.(\d+)\.\d+\.")
    depth = (
        count_groups(sd, r"image_encoder\.backbone\.blocks\.\d+\.(\d+)\.")
        if chunks
        else count_groups(sd, r"image_encoder\.backbone\.blocks\.(\d+)\.")
    )
    first = "blocks.0.0." if chunks else "blocks.0."
    return {
        "img_size": grid * patch,
        "in_chans": in_chans,
        "patch_size": patch,
        "encoder_type": "dinov2",
        "encoder_embed_dim": embed_dim,
        "encoder_depth": depth,
        "encoder_num_heads": max(embed_dim // 64, 1),
        "encoder_mlp_ratio": sd[prefix + first + "mlp.fc1.weight"].shape[0] / embed_dim,
        "encoder_global_attn_indexes": (),
        "encoder_window_size": 0,
        "encoder_pos_embed_size": grid,
        "encoder_block_chunks": chunks,
    }


def config_from_metadata(metadata: Mapping[str, Any]) -> ModelConfig | None:
    """The configuration a checkpoint records beside its weights, if any.

    Our exports record it (``neurosam3d_config``: a dict, or JSON in safetensors metadata; the
    release format's ``args.neurosam3d_config``); our training checkpoints record the training
    configuration's ``model`` section (``hyper_parameters.config.model``: ``name`` and an
    optional ``img_size``). Needed where the weights do not tell, e.g. a 3DINO encoder run at
    another input size than its position embedding's.
    """
    import json

    raw: Any = metadata.get("neurosam3d_config")
    if raw is None and "args" in metadata:
        raw = getattr(metadata["args"], "neurosam3d_config", None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if isinstance(raw, Mapping):
        fields = dict(raw)
        fields["encoder_global_attn_indexes"] = tuple(fields.get("encoder_global_attn_indexes", ()))
        try:
            return ModelConfig(**fields)
        except (TypeError, ValueError):
            return None
    hparams = metadata.get("hyper_parameters")
    config = hparams.get("config") if isinstance(hparams, Mapping) else None
    section = config.get("model") if isinstance(config, Mapping) else None
    if isinstance(section, Mapping) and section.get("name") in MODEL_CONFIGS:
        cfg = MODEL_CONFIGS[section["name"]]
        size = section.get("img_size")
        return replace(cfg, img_size=int(size)) if size else cfg
    return None

"""Golden parity of the 3DINO ViT-L backbone (tests/fixtures/dino3d_parity): "compatible".

The 96^3 golden array (position embedding resized to 6^3) is checked on the model loaded from a
3DINO teacher checkpoint, in test_pretrained.py, so that the 307 M weights are pushed through
one extra forward only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from neurosam3d.model import MODEL_CONFIGS, build_model
from neurosam3d.model.dino_encoder import DinoVisionTransformer3D
from tests.model.test_parity import _close

TOL = 1e-4  # max absolute difference on every array (fixture README)
NARROW = replace(
    MODEL_CONFIGS["dinov2_vitl3d"], encoder_embed_dim=64, encoder_depth=4, encoder_num_heads=4
)


def test_backbone_keys_and_shapes_are_the_3dino_teacher_backbone(
    dino_keys: dict[str, tuple[int, ...]], dino_backbone: DinoVisionTransformer3D
) -> None:
    got = {k: tuple(v.shape) for k, v in dino_backbone.state_dict().items()}
    assert len(dino_keys) == 343
    assert got == dino_keys
    assert list(got) == list(dino_keys)


def test_patch_and_class_tokens_at_112(
    dino_backbone: DinoVisionTransformer3D,
    dino_input: torch.Tensor,
    dino_golden: dict[str, np.ndarray],
) -> None:
    with torch.inference_mode():
        out = dino_backbone.forward_features(dino_input)
        _close("patch_tokens", out["x_norm_patchtokens"], dino_golden, TOL)
        _close("cls_token", out["x_norm_clstoken"], dino_golden, TOL)


def test_seed_geometry_neck_prompt_encoder_and_decoder_at_7_cubed() -> None:
    cfg = MODEL_CONFIGS["dinov2_vitl3d"]
    assert (cfg.img_size, cfg.embedding_size, cfg.low_res_size) == (112, 7, 28)
    with torch.device("meta"):
        sd = build_model("dinov2_vitl3d").state_dict()
    neck = {k: tuple(v.shape) for k, v in sd.items() if k.startswith("image_encoder.neck.")}
    assert neck == {
        "image_encoder.neck.0.weight": (384, 1024, 1, 1, 1),  # 1x1x1 conv, no bias
        "image_encoder.neck.1.weight": (384,),
        "image_encoder.neck.1.bias": (384,),
    }
    backbone = sum(v.numel() for k, v in sd.items() if k.startswith("image_encoder.backbone."))
    assert backbone == 306_910_208  # vit_large_3d, as in state_dict_keys.tsv


def test_narrow_backbone_runs_the_seed_pipeline_at_112() -> None:
    """Same geometry and decoder as ``dinov2_vitl3d``, a narrow backbone: embedding 384 x 7^3,
    low-resolution masks 28^3."""
    model = build_model(NARROW).eval()
    image = torch.randn(2, 1, 112, 112, 112, generator=torch.Generator().manual_seed(0))
    points = torch.tensor([[[56.0, 40.0, 70.0]], [[10.0, 100.0, 5.0]]])
    with torch.inference_mode():
        emb = model.image_encoder(image)
        logits, iou = model.predict_masks(emb, points, torch.ones(2, 1, dtype=torch.long))
    assert tuple(emb.shape) == (2, 384, 7, 7, 7)
    assert tuple(logits.shape) == (2, 1, 28, 28, 28) and tuple(iou.shape) == (2, 1)
    assert tuple(model.prompt_encoder.get_dense_pe().shape) == (1, 384, 7, 7, 7)
    assert torch.isfinite(logits).all()

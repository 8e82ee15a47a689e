"""Golden parity with the released SAM-Med3D implementation: the definition of "compatible"."""

from __future__ import annotations

import numpy as np
import torch

from neurosam3d.model import Sam3D

EMBED_TOL = 1e-3  # image embedding and prompt embeddings (fixture README)
LOGIT_TOL = 1e-4  # logits and IoU


def _close(name: str, got: torch.Tensor, golden: dict[str, np.ndarray], tol: float) -> None:
    expected = golden[name]
    assert tuple(got.shape) == expected.shape, name
    diff = float(np.abs(got.detach().float().numpy() - expected).max())
    assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol}"


def test_state_dict_keys_and_shapes_match_the_release(
    released_keys: dict[str, tuple[int, ...]], golden_model: Sam3D
) -> None:
    got = {k: tuple(v.shape) for k, v in golden_model.state_dict().items()}
    assert got == released_keys
    assert list(got) == list(released_keys)
    assert sum(np.prod(s) for s in released_keys.values()) == 100_509_616


def test_image_embedding_and_dense_pe(
    golden_model: Sam3D, golden_embedding: torch.Tensor, golden: dict[str, np.ndarray]
) -> None:
    _close("image_embedding", golden_embedding, golden, EMBED_TOL)
    with torch.inference_mode():
        _close("dense_pe", golden_model.prompt_encoder.get_dense_pe(), golden, EMBED_TOL)


def test_three_clicks_with_mask_feedback_and_multimask(
    golden_model: Sam3D, golden_embedding: torch.Tensor, golden: dict[str, np.ndarray]
) -> None:
    previous = None
    with torch.inference_mode():
        for step in (1, 2, 3):
            points = torch.from_numpy(golden[f"click{step}_points"])
            labels = torch.from_numpy(golden[f"click{step}_labels"])
            assert bool(golden[f"click{step}_mask_input_is_none"]) == (previous is None)
            if step == 1:
                sparse, dense = golden_model.prompt_encoder(
                    points=(points, labels), boxes=None, masks=None
                )
                _close("click1_sparse_embeddings", sparse, golden, EMBED_TOL)
                _close("click1_dense_embeddings", dense, golden, EMBED_TOL)
                logits, iou = golden_model.predict_masks(
                    golden_embedding, points, labels, None, multimask=True
                )
                _close("click1_multimask_low_res_logits", logits, golden, LOGIT_TOL)
                _close("click1_multimask_iou", iou, golden, LOGIT_TOL)
            logits, iou = golden_model.predict_masks(golden_embedding, points, labels, previous)
            _close(f"click{step}_low_res_logits", logits, golden, LOGIT_TOL)
            _close(f"click{step}_iou", iou, golden, LOGIT_TOL)
            previous = logits


def test_decoder_call_signature_matches_the_helper(
    golden_model: Sam3D, golden_embedding: torch.Tensor, golden: dict[str, np.ndarray]
) -> None:
    """The documented low-level calls give the same logits as ``predict_masks``."""
    points = torch.from_numpy(golden["click1_points"])
    labels = torch.from_numpy(golden["click1_labels"])
    with torch.inference_mode():
        sparse, dense = golden_model.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        logits, iou = golden_model.mask_decoder(
            image_embeddings=golden_embedding,
            image_pe=golden_model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    _close("click1_low_res_logits", logits, golden, LOGIT_TOL)
    _close("click1_iou", iou, golden, LOGIT_TOL)

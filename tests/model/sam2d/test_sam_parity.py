"""SAM ViT-B against the official ``segment-anything`` 1.0 (test-only dependency).

Both models get the same seeded weights (normal, scaled like the SAM-Med2D fixture's rule);
the image embedding of one 1024 x 1024 image and two prompt steps (a positive click with
multimask output, then the highest-IoU low-res mask fed back with a negative click) must agree
within 1e-3 x each reference array's max absolute value. One forward of each encoder per run.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import torch

from neurosam3d.model import build_model
from neurosam3d.model.sam2d import Sam2D
from tests.model.sam2d.conftest import assert_close


def _seeded_weights(model: torch.nn.Module, seed: int = 17) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, tensor in model.state_dict().items():
        z = torch.randn(tensor.shape, generator=gen)
        if key.endswith(".weight") and tensor.ndim == 1:
            out[key] = 1.0 + 0.1 * z
        elif key.endswith("positional_encoding_gaussian_matrix"):
            out[key] = z
        else:
            out[key] = 0.02 * z
    return out


@pytest.fixture(scope="module")
def pair(official_build_sam: ModuleType) -> tuple[Sam2D, torch.nn.Module]:
    """(ours, official), both holding the same seeded weights, in eval mode."""
    torch.manual_seed(0)
    official = official_build_sam.build_sam_vit_b(checkpoint=None)
    weights = _seeded_weights(official)
    official.load_state_dict(weights)
    ours = build_model("sam_vit_b")
    assert isinstance(ours, Sam2D)
    ours.load_state_dict(weights)  # strict: SAM's own key names and shapes
    return ours.eval(), official.eval()


@pytest.fixture(scope="module")
def embeddings(pair: tuple[Sam2D, torch.nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    ours, official = pair
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        return ours.image_encoder(image), official.image_encoder(image)


def test_no_torchvision_was_needed() -> None:
    assert importlib.util.find_spec("torchvision") is None


def test_same_keys_shapes_and_submodules(pair: tuple[Sam2D, torch.nn.Module]) -> None:
    ours, official = pair
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    assert got == want
    assert ours.img_size == official.image_encoder.img_size == 1024
    for name in ("image_encoder", "prompt_encoder", "mask_decoder"):
        assert isinstance(getattr(ours, name), torch.nn.Module)
    assert torch.equal(ours.pixel_mean, official.pixel_mean)
    assert torch.equal(ours.pixel_std, official.pixel_std)


@pytest.mark.slow  # two ViT-B forwards at 1024 x 1024 on CPU
def test_embedding_and_two_prompt_steps_match_the_official_sam(
    pair: tuple[Sam2D, torch.nn.Module], embeddings: tuple[torch.Tensor, torch.Tensor]
) -> None:
    ours, official = pair
    emb, ref_emb = embeddings
    assert emb.shape == (1, 256, 64, 64)
    assert_close("image_embedding", emb, ref_emb.numpy())
    points = torch.tensor([[[412.0, 560.0]]])
    labels = torch.tensor([[1]])
    feedback = {}
    with torch.inference_mode():
        for tag, model, embedding in (("ours", ours, emb), ("official", official, ref_emb)):
            sparse, dense = model.prompt_encoder(points=(points, labels), boxes=None, masks=None)
            masks, iou = model.mask_decoder(
                image_embeddings=embedding,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            feedback[tag] = (masks, iou)
        (masks, iou), (ref_masks, ref_iou) = feedback["ours"], feedback["official"]
        assert masks.shape == (1, 3, 256, 256)
        assert_close("step1_masks", masks, ref_masks.numpy())
        assert_close("step1_iou", iou, ref_iou.numpy())
        best = int(ref_iou[0].argmax())
        assert int(iou[0].argmax()) == best
        points2 = torch.tensor([[[412.0, 560.0], [100.0, 900.0]]])
        labels2 = torch.tensor([[1, 0]])
        step2 = []
        for model, embedding, prev in ((ours, emb, masks), (official, ref_emb, ref_masks)):
            sparse, dense = model.prompt_encoder(
                points=(points2, labels2), boxes=None, masks=prev[:, best : best + 1]
            )
            step2.append(
                model.mask_decoder(
                    image_embeddings=embedding,
                    image_pe=model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                )
            )
        (masks2, iou2), (ref_masks2, ref_iou2) = step2
        assert masks2.shape == (1, 1, 256, 256)
        assert_close("step2_masks", masks2, ref_masks2.numpy())
        assert_close("step2_iou", iou2, ref_iou2.numpy())
        full = ours.postprocess_masks(masks2, (1024, 768), (600, 450))
        ref_full = official.postprocess_masks(ref_masks2, (1024, 768), (600, 450))
    assert full.shape == (1, 1, 600, 450)
    assert_close("step2_full_masks", full, ref_full.numpy())

"""The layers the 3-D and 2-D models share: rank-generic code, per-rank behaviour kept."""

from __future__ import annotations

import pytest
import torch

from neurosam3d.model import get_config
from neurosam3d.model.common import LayerNorm3d
from neurosam3d.model.prompt_encoder import PositionEmbeddingRandom, PromptEncoder3D
from neurosam3d.model.sam2d.config import Sam2DConfig
from neurosam3d.model.sam2d.layers import LayerNorm2d
from neurosam3d.model.sam2d.prompt_encoder import PromptEncoder

#: float32 tolerance of two computations of the same values in a different order
ATOL = 1e-6


def test_position_features_per_rank() -> None:
    """Rank 2: SAM's ``[sin, cos]``; rank 3: ``[sin, cos, sin]`` (the third group is the first)."""
    torch.manual_seed(0)
    coords = torch.rand(2, 5, 3)
    three = PositionEmbeddingRandom(4, rank=3).forward_with_coords(coords, 1)
    assert three.shape == (2, 5, 12)
    torch.testing.assert_close(three[..., 8:], three[..., :4], rtol=0, atol=0)
    two = PositionEmbeddingRandom(4, rank=2).forward_with_coords(coords[..., :2], 1)
    assert two.shape == (2, 5, 8)
    torch.testing.assert_close(two.pow(2)[..., :4] + two.pow(2)[..., 4:], torch.ones(2, 5, 4))


def test_dense_encoding_swaps_the_first_two_axes() -> None:
    """The grid's first two axes reach the frequencies swapped in both ranks (SAM's (x, y))."""
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(4, rank=2)
    grid = pe((3, 5))  # 8 x 3 x 5
    x, y = (torch.arange(5) + 0.5) / 5, (torch.arange(3) + 0.5) / 3
    point = pe.forward_with_coords(torch.tensor([[[x[4], y[1]]]]), 1)[0, 0]
    torch.testing.assert_close(grid[:, 1, 4], point, rtol=0, atol=ATOL)


def test_channel_layernorm_same_values_per_rank_fp32_statistics_in_2d() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 4, 5) * 3 + 1
    norm2, norm3 = LayerNorm2d(6), LayerNorm3d(6)
    with torch.no_grad():
        for norm in (norm2, norm3):
            norm.weight.copy_(torch.linspace(0.5, 1.5, 6))
            norm.bias.copy_(torch.linspace(-0.1, 0.1, 6))
    torch.testing.assert_close(norm3(x[:, :, None]).squeeze(2), norm2(x), rtol=0, atol=ATOL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = x.bfloat16()
        assert norm2(low).dtype == torch.bfloat16  # computed in fp32, returned as the input
    expected = norm2(low.float())
    torch.testing.assert_close(norm2(low).float(), expected, rtol=0, atol=1e-2)


@pytest.mark.parametrize("rank", [2, 3])
def test_mask_prompt_of_the_wrong_size_is_rejected(rank: int) -> None:
    if rank == 3:
        encoder = PromptEncoder3D(get_config("tiny"))
    else:
        encoder = PromptEncoder(Sam2DConfig(img_size=64, encoder_embed_dim=32, encoder_num_heads=2))
    low = encoder.low_res_size
    good = torch.zeros(1, 1, *(low,) * rank)
    sparse, dense = encoder(points=None, boxes=None, masks=good)
    assert sparse.shape == (1, 0, encoder.embed_dim)
    assert dense.shape == (1, encoder.embed_dim, *(low // 4,) * rank)
    with pytest.raises(ValueError, match="mask prompt must be B x 1 x"):
        encoder(points=None, boxes=None, masks=torch.zeros(1, 1, *(low + 4,) * rank))


def test_no_prompt_batch_per_rank() -> None:
    """SAM's encoder takes no prompt at all (batch 1); the 3-D one asks for one."""
    two = PromptEncoder(Sam2DConfig(img_size=64, encoder_embed_dim=32, encoder_num_heads=2))
    assert two(points=None, boxes=None, masks=None)[1].shape[0] == 1
    with pytest.raises(ValueError, match="at least one of points, boxes, masks"):
        PromptEncoder3D(get_config("tiny"))(points=None, boxes=None, masks=None)

"""Configurations of the 2-D SAM baselines: one dataclass, one registry.

Geometry (square images, sizes in pixels or tokens):

* input image ``B x 3 x img_size x img_size`` (normalised with ``pixel_mean`` / ``pixel_std``);
* image embedding ``B x prompt_embed_dim x G x G`` with ``G = img_size // patch_size``;
* low-resolution mask logits ``B x M x 4G x 4G`` (also the size of the mask prompt).

``"sam_vit_b"`` is SAM ViT-B (``sam_vit_b_01ec64.pth``, 1024 input); ``"sam_med2d_vit_b"`` is
SAM-Med2D ViT-B (``sam-med2d_b.pth``, 256 input, an adapter in every encoder block).
"""

from __future__ import annotations

from dataclasses import dataclass

from neurosam3d.model.config import SamGeometry


@dataclass(frozen=True)
class Sam2DConfig(SamGeometry):
    """Hyper-parameters of a :class:`~neurosam3d.model.sam2d.sam2d.Sam2D` model (grid sizes,
    shared checks and ``to_dict`` from :class:`~neurosam3d.model.config.SamGeometry`)."""

    img_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_mlp_ratio: float = 4.0
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    encoder_window_size: int = 14
    encoder_adapters: bool = False
    adapter_ratio: float = 0.25
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    decoder_attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_hidden_dim: int = 256
    iou_head_depth: int = 3
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        problems = self._shared_problems()
        if self.prompt_embed_dim % 2:
            problems.append("prompt_embed_dim must be even (2-D Fourier features are [sin, cos])")
        if problems:
            raise ValueError("invalid Sam2DConfig: " + "; ".join(problems))


SAM2D_CONFIGS: dict[str, Sam2DConfig] = {
    "sam_vit_b": Sam2DConfig(),
    "sam_med2d_vit_b": Sam2DConfig(img_size=256, encoder_adapters=True),
}

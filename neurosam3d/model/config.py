"""Model configurations: one dataclass, one registry of named sizes.

Every named configuration is built by the same modules (:func:`neurosam3d.model.build_model`);
``"sam_med3d"`` is the released SAM-Med3D architecture ("vit_b_ori": the SAM-Med3D, -organ,
-brain and -turbo checkpoints), ``"small"`` and ``"tiny"`` are narrower, shallower or
smaller-input variants, and ``"dinov2_vitl3d"`` is the seed's own model: the 3DINO ViT-L 3-D
backbone (``encoder_type="dinov2"``, :mod:`neurosam3d.model.dino_encoder`) with a SAM-Med3D
prompt encoder and mask decoder at its 7^3 embedding grid.

Geometry (all sizes in voxels or tokens, cubic volumes):

* input volume ``B x in_chans x img_size^3``;
* token grid / image embedding ``B x prompt_embed_dim x embedding_size^3`` with
  ``embedding_size = img_size // patch_size``;
* low-resolution mask logits ``B x 1 x low_res_size^3`` with ``low_res_size = 4 * embedding_size``
  (``img_size / 4`` for patch 16), also the size of the mask prompt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ENCODER_TYPES = ("sam_med3d", "dinov2")
INPUT_SCALINGS = ("zscore", "percentile")


class SamGeometry:
    """What the 3-D and 2-D configuration dataclasses share: the token and mask grid sizes,
    their common checks and the plain-dict form (fields declared by the dataclasses)."""

    img_size: int
    patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    mask_in_chans: int

    @property
    def embedding_size(self) -> int:
        """Edge of the token grid and of the image embedding (``img_size // patch_size``)."""
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Edge of the low-resolution mask logits and of the mask prompt."""
        return 4 * self.embedding_size

    def _shared_problems(self) -> list[str]:
        """What is wrong with the fields both configurations have (empty: nothing)."""
        problems = []
        if self.img_size % self.patch_size:
            problems.append(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append("encoder_embed_dim must be divisible by encoder_num_heads")
        if self.mask_in_chans % 4:
            problems.append("mask_in_chans must be divisible by 4")
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn_indexes):
            problems.append("encoder_global_attn_indexes out of range")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON/YAML friendly: tuples as lists)."""
        out = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class ModelConfig(SamGeometry):
    """Hyper-parameters of a :class:`~neurosam3d.model.sam3d.Sam3D` model.

    Windowed encoder blocks need ``encoder_window_size`` to either divide the token grid (plain
    windows, no padding) or cover it (one zero-padded window, as in the released model).

    ``encoder_type`` picks the image encoder: ``"sam_med3d"`` (windowed ViT with relative
    positions and a two-convolution neck) or ``"dinov2"`` (a 3DINO / DINOv2 ViT with a class
    token, LayerScale and a learned position embedding stored for an
    ``encoder_pos_embed_size``^3 grid and resized trilinearly to the input's grid, blocks stored
    in ``encoder_block_chunks`` chunks; neck: one 1x1x1 convolution and a channel LayerNorm).
    The window and global-attention fields do not apply to it. ``input_scaling`` is the
    intensity normalisation the model's weights expect (``"zscore"``: SAM-Med3D's per-volume
    z-score; ``"percentile"``: each volume's 0.05 / 99.95 percentiles mapped to [-1, 1], as
    3DINO was pretrained), see :func:`neurosam3d.transforms.intensity.normalise_intensity`.
    """

    img_size: int = 128
    in_chans: int = 1
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_mlp_ratio: float = 4.0
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    encoder_window_size: int = 14
    prompt_embed_dim: int = 384
    mask_in_chans: int = 16
    box_prompts: bool = False
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    decoder_attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_hidden_dim: int = 256
    iou_head_depth: int = 3
    encoder_type: str = "sam_med3d"
    encoder_pos_embed_size: int = 0  # dinov2: grid of the stored position embedding (0: own)
    encoder_block_chunks: int = 0  # dinov2: blocks stored as blocks.{chunk}.{i} (0: blocks.{i})
    input_scaling: str = "zscore"

    def __post_init__(self) -> None:
        problems = []
        if self.encoder_type not in ENCODER_TYPES:
            problems.append(f"encoder_type {self.encoder_type!r} is not one of {ENCODER_TYPES}")
        if self.input_scaling not in INPUT_SCALINGS:
            problems.append(f"input_scaling {self.input_scaling!r} is not one of {INPUT_SCALINGS}")
        if self.encoder_block_chunks and self.encoder_depth % self.encoder_block_chunks:
            problems.append("encoder_depth must be a multiple of encoder_block_chunks")
        problems += self._shared_problems()
        if self.prompt_embed_dim % 3:
            problems.append(
                "prompt_embed_dim must be divisible by 3 (3-D Fourier features are [sin, cos, sin])"
            )
        grid, window = self.embedding_size, self.encoder_window_size
        if self.encoder_type == "sam_med3d" and window > 0 and grid % window and grid > window:
            problems.append(
                f"encoder_window_size {window} neither divides nor covers the {grid}^3 token grid"
            )
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def pos_embed_size(self) -> int:
        """Edge of the grid the stored position embedding is laid out for."""
        return self.encoder_pos_embed_size or self.embedding_size


MODEL_CONFIGS: dict[str, ModelConfig] = {
    # The released SAM-Med3D architecture ("vit_b_ori", 100.5 M parameters).
    "sam_med3d": ModelConfig(),
    # Same layout at half width and depth: GPU fine-tuning experiments on 128^3 crops.
    "small": ModelConfig(
        encoder_embed_dim=384,
        encoder_depth=6,
        encoder_num_heads=6,
        encoder_global_attn_indexes=(2, 5),
        prompt_embed_dim=192,
        decoder_mlp_dim=1024,
        iou_head_hidden_dim=128,
    ),
    # CPU tests and the demo: 64^3 input, 4^3 tokens padded into one 6^3 window, like the
    # released 8^3 grid in its 14^3 window, so the same code paths run.
    "tiny": ModelConfig(
        img_size=64,
        encoder_embed_dim=96,
        encoder_depth=4,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(1, 3),
        encoder_window_size=6,
        prompt_embed_dim=96,
        mask_in_chans=8,
        decoder_mlp_dim=256,
        decoder_num_heads=4,
        iou_head_hidden_dim=64,
    ),
    # The seed's model: 3DINO ViT-L (crop 112, 7^3 tokens, 24 blocks in 4 chunks, 304 M
    # parameters), neck to 384 channels, SAM-Med3D prompt encoder and decoder at 7^3 (masks 28^3).
    "dinov2_vitl3d": ModelConfig(
        img_size=112,
        encoder_type="dinov2",
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(),
        encoder_window_size=0,
        encoder_pos_embed_size=7,
        encoder_block_chunks=4,
        input_scaling="percentile",
    ),
}


def get_config(name: str) -> ModelConfig:
    """Return the registered configuration ``name``; raise ``KeyError`` listing the known names."""
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        known = ", ".join(sorted(MODEL_CONFIGS))
        raise KeyError(f"unknown model configuration {name!r}; known: {known}") from None

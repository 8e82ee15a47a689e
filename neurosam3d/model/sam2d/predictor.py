"""Interactive 2-D prediction: encode a slice once, then decode any number of prompt steps.

::

    predictor = Predictor2D(build_model("sam_vit_b"))
    predictor.set_image(slice_rgb)                    # 3 x H x W (or H x W) pixels in 0-255
    out = predictor.predict(points, labels, multimask=True)        # B x N x 2 (x, y), B x N
    best = out.low_res_logits[:, out.iou[0].argmax()][:, None]
    out = predictor.predict(points2, labels2, mask_input=best)
    predictor.set_embedding(torch.cat(embeddings), (H, W))   # B slices: prompt set b -> slice b

As SAM's ``SamPredictor``: the image is resized so its longest side is the model input
(bilinear, antialiased; the other side ``int(side * scale + 0.5)``), normalised with the
model's pixel mean/std and zero-padded at the bottom/right. Points ``(x, y)`` and boxes
``(x0, y0, x1, y1)`` are pixel coordinates of the *original* image and are scaled the same way.
Outputs (:class:`neurosam3d.model.Prediction`, 2-D here): ``low_res_logits`` ``B x M x 4G x 4G``
(feed one channel back as ``mask_input``), ``probabilities`` and ``mask`` ``B x M x H x W`` at
the original size, ``iou`` ``B x M``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurosam3d.model.predictor import PredictorBase
from neurosam3d.model.sam2d.sam2d import Sam2D


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size after resizing the longest side to ``long_side`` (SAM's rounding)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class Predictor2D(PredictorBase):
    """Stateful wrapper around a :class:`Sam2D` that caches one slice's embedding (arguments
    as :class:`~neurosam3d.model.predictor.PredictorBase`; ``threshold`` 0.5 is SAM's logit 0).
    """

    rank = 2
    point_layout = "(x, y) pixels"
    box_layout = "(x0, y0, x1, y1) pixels"
    model: Sam2D

    #: ``(H, W)`` of the cached image and of its resized copy in the model input
    original_size: tuple[int, int] | None = None
    input_size: tuple[int, int] | None = None

    def reset_image(self) -> None:
        """Drop the cached embedding."""
        self._embedding = self.original_size = self.input_size = None

    def set_embedding(self, embedding: torch.Tensor, original_size: tuple[int, int]) -> None:
        """Cache embeddings computed earlier of ``B`` images of ``original_size`` ``(H, W)``.

        With ``B > 1`` the next :meth:`predict` decodes prompt set ``b`` against embedding ``b``
        (several slices of one volume, each encoded once, decoded in one batch).
        """
        g = self.model.config.embedding_size
        if embedding.ndim != 4 or tuple(embedding.shape[2:]) != (g, g):
            raise ValueError(f"an embedding is B x E x {g} x {g}, got {tuple(embedding.shape)}")
        h, w = (int(n) for n in original_size)
        self._embedding = embedding.to(self.device, torch.float32)
        self.original_size = (h, w)
        self.input_size = preprocess_shape(h, w, self.model.img_size)

    def set_image(self, image: torch.Tensor) -> None:
        """Resize, normalise, pad and encode ``image`` (``3 x H x W`` or ``H x W``, 0-255)."""
        if image.ndim == 2:
            image = image.expand(3, -1, -1)
        if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
            raise ValueError(
                f"set_image expects a 3 x H x W or H x W image, got {tuple(image.shape)}"
            )
        if not torch.isfinite(image).all():
            raise ValueError("set_image: the image has NaN or infinite pixels")
        h, w = int(image.shape[1]), int(image.shape[2])
        size = preprocess_shape(h, w, self.model.img_size)
        x = image.to(self.device, torch.float32)[None]
        if size != (h, w):
            x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)
        with torch.inference_mode(), self._autocast():
            emb = self.model.image_encoder(self.model.preprocess(x))
        self._embedding = emb.float()
        self.original_size, self.input_size = (h, w), size

    def _to_input(self, coords: torch.Tensor | None) -> torch.Tensor | None:
        """Original ``(x, y)`` pixels (last axis, pairs) -> model-input pixels (float32)."""
        if coords is None:
            return None
        assert self.original_size is not None and self.input_size is not None
        (h, w), (nh, nw) = self.original_size, self.input_size
        coords = coords.to(self.device, torch.float32)
        factor = coords.new_tensor((nw / w, nh / h))
        return (coords.reshape(*coords.shape[:-1], -1, 2) * factor).reshape(coords.shape)

    def _upscale(self, logits: torch.Tensor) -> torch.Tensor:
        assert self.original_size is not None and self.input_size is not None
        return self.model.postprocess_masks(logits, self.input_size, self.original_size)

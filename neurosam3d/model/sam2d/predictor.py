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

import contextlib

import torch
import torch.nn.functional as F

from neurosam3d.model.predictor import Prediction
from neurosam3d.model.sam2d.sam2d import Sam2D


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size after resizing the longest side to ``long_side`` (SAM's rounding)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class Predictor2D:
    """Stateful wrapper around a :class:`Sam2D` that caches one slice's embedding.

    Args:
        model: the model; moved to ``device`` and put in eval mode.
        device: where to run.
        threshold: probability above which a pixel is in the mask (0.5 = SAM's logit 0).
        amp_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on
            GPU); outputs are float32 either way.
    """

    def __init__(
        self,
        model: Sam2D,
        device: str | torch.device = "cpu",
        threshold: float = 0.5,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.threshold = threshold
        self.amp_dtype = amp_dtype
        self._embedding: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    def reset_image(self) -> None:
        """Drop the cached embedding."""
        self._embedding = self.original_size = self.input_size = None

    @property
    def embedding(self) -> torch.Tensor | None:
        """The cached embedding (``B x E x G x G`` float32), or ``None``."""
        return self._embedding

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

    def _scale(self, coords: torch.Tensor) -> torch.Tensor:
        """Original ``(x, y)`` pixels (last axis, pairs) -> model-input pixels."""
        assert self.original_size is not None and self.input_size is not None
        (h, w), (nh, nw) = self.original_size, self.input_size
        factor = coords.new_tensor((nw / w, nh / h))
        return (coords.reshape(*coords.shape[:-1], -1, 2) * factor).reshape(coords.shape)

    def predict(
        self,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
        box: torch.Tensor | None = None,
    ) -> Prediction:
        """Decode ``B`` prompts against the cached embedding (see the module docstring).

        Args:
            points: ``B x N x 2`` float ``(x, y)`` pixels of the original image, or ``None``.
            labels: ``B x N`` int labels (1 positive, 0 negative, -1 padding).
            mask_input: ``B x 1 x 4G x 4G`` previous low-resolution logits, or ``None``.
            multimask: return the 3 alternative masks instead of one.
            box: ``B x 4`` pixel box ``(x0, y0, x1, y1)`` of the original image, or ``None``.
        """
        if self._embedding is None or self.original_size is None or self.input_size is None:
            raise RuntimeError("call set_image(image) before predict()")
        low = self.model.low_res_size
        if points is not None:
            if labels is None or points.ndim != 3 or points.shape[-1] != 2:
                raise ValueError("points must be B x N x 2 (x, y) with labels B x N")
            if tuple(labels.shape) != tuple(points.shape[:2]):
                raise ValueError(
                    f"labels {tuple(labels.shape)} do not match points {tuple(points.shape)}"
                )
        if box is not None and (box.ndim != 2 or box.shape[-1] != 4):
            raise ValueError("box must be B x 4: (x0, y0, x1, y1) pixels")
        if mask_input is not None and (
            mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, low, low)
        ):
            raise ValueError(f"mask_input must be B x 1 x {low} x {low} low-resolution logits")
        if points is None and box is None and mask_input is None:
            raise ValueError("give points, a box or a mask_input")
        dev = self.device
        with torch.inference_mode(), self._autocast():
            logits, iou = self.model.predict_masks(
                self._embedding,
                None if points is None else self._scale(points.to(dev, torch.float32)),
                None if labels is None else labels.to(dev, torch.long),
                None if mask_input is None else mask_input.to(dev, torch.float32),
                multimask=multimask,
                boxes=None if box is None else self._scale(box.to(dev, torch.float32)),
            )
            logits = logits.float()
            full = self.model.postprocess_masks(logits, self.input_size, self.original_size)
            probabilities = torch.sigmoid(full)
        return Prediction(logits, probabilities, probabilities > self.threshold, iou.float())

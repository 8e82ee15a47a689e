"""Interactive prediction: encode a volume once, then decode any number of click sets.

::

    predictor = Predictor(model, device="cpu")
    predictor.set_image(volume)                     # 1 x in_chans x S x S x S, float
    predictor.set_window(record.prepare(image, "CT", affine), box)  # or: as the record says
    out = predictor.predict(points, labels)         # B x N x 3 voxel indices, B x N labels
    out = predictor.predict(points2, labels2, mask_input=out.low_res_logits)

Coordinates are voxel indices of the model input (``S = model.img_size``) along its last three
axes (points outside it are allowed: sliding-window callers keep clicks of neighbouring
windows; the Fourier encoding extrapolates); labels are 1 (positive), 0 (negative) or -1
(padding, ignored). ``B`` targets of the same
image are decoded in one batch against the cached embedding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from neurosam3d.model.promptable import PromptableModel
from neurosam3d.model.sam3d import Sam3D
from neurosam3d.transforms.geometry import Box
from neurosam3d.transforms.preprocessing import PreparedImage


@dataclass(frozen=True)
class Prediction:
    """One decoding step for ``B`` targets and ``M`` masks each (1, or 3 with ``multimask``).

    Attributes:
        low_res_logits: ``B x M x L x L x L`` float32 logits (``L = low_res_size``); feed one
            channel back as the next step's ``mask_input``.
        probabilities: ``B x M x S x S x S`` float32 sigmoid of the trilinearly upsampled logits.
        mask: ``B x M x S x S x S`` bool, ``probabilities > threshold``.
        iou: ``B x M`` float32 predicted IoU of each mask.
    """

    low_res_logits: torch.Tensor
    probabilities: torch.Tensor
    mask: torch.Tensor
    iou: torch.Tensor


class PredictorBase:
    """Stateful wrapper around a promptable model that caches image embeddings, for ``rank``
    spatial axes (:class:`Predictor`: 3-D, :class:`neurosam3d.model.sam2d.Predictor2D`: 2-D).

    Subclasses set ``rank`` and the wording of their prompts (``point_layout``,
    ``box_layout``), encode images (``set_image``) and map the low-resolution logits to their
    output grid (:meth:`_upscale`).

    Args:
        model: the model; moved to ``device`` and put in eval mode.
        device: where to run.
        threshold: probability above which a voxel (pixel) is in the mask.
        amp_dtype: run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on GPU);
            outputs are float32 either way.
    """

    rank: int
    point_layout: str
    box_layout: str

    def __init__(
        self,
        model: PromptableModel,
        device: str | torch.device = "cpu",
        threshold: float = 0.5,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.threshold = threshold
        self.amp_dtype = amp_dtype
        self._embedding: torch.Tensor | None = None

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    def reset_image(self) -> None:
        """Drop the cached embedding."""
        self._embedding = None

    @property
    def embedding(self) -> torch.Tensor | None:
        """The cached image embedding (``B x E x G^rank`` float32), or ``None``."""
        return self._embedding

    def _check_prompts(
        self,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        box: torch.Tensor | None,
    ) -> int:
        """The prompts' batch size; ``ValueError`` for mis-shaped or missing prompts."""
        n, low = self.rank, self.model.low_res_size
        batch = None
        if points is not None:
            if labels is None or points.ndim != 3 or points.shape[-1] != n:
                raise ValueError(
                    f"points must be B x N x {n} ({self.point_layout}) with labels B x N"
                )
            if tuple(labels.shape) != tuple(points.shape[:2]):
                raise ValueError(
                    f"labels {tuple(labels.shape)} do not match points {tuple(points.shape)}"
                )
            batch = points.shape[0]
        if box is not None:
            if box.ndim != 2 or box.shape[-1] != 2 * n:
                raise ValueError(f"box must be B x {2 * n}: {self.box_layout}")
            batch = batch or box.shape[0]
        if mask_input is not None:
            if mask_input.ndim != 2 + n or tuple(mask_input.shape[1:]) != (1,) + (low,) * n:
                grid = f"{low}^{n}" if n > 2 else f"{low} x {low}"
                raise ValueError(f"mask_input must be B x 1 x {grid} low-resolution logits")
            batch = batch or mask_input.shape[0]
        if batch is None:
            raise ValueError("give points, a box or a mask_input")
        return batch

    def _to_input(self, coords: torch.Tensor | None) -> torch.Tensor | None:
        """Points or box corners as the model takes them (float32 on the device)."""
        return None if coords is None else coords.to(self.device, torch.float32)

    def _upscale(self, logits: torch.Tensor) -> torch.Tensor:
        """``B x M x L^rank`` low-resolution logits -> logits on the output grid."""
        raise NotImplementedError

    def predict(
        self,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
        box: torch.Tensor | None = None,
    ) -> Prediction:
        """Decode ``B`` prompt sets against the cached embedding (see the module docstring).

        Args:
            points: ``B x N x rank`` float positions, or ``None`` with a box or mask prompt.
            labels: ``B x N`` int labels (1 positive, 0 negative, -1 padding).
            mask_input: ``B x 1 x L^rank`` previous low-resolution logits, or ``None``.
            multimask: return the 3 alternative masks instead of one.
            box: ``B x 2 rank`` box corners, or ``None``.
        """
        if not self.is_image_set:
            raise RuntimeError("call set_image() before predict()")
        self._check_prompts(points, labels, mask_input, box)
        dev = self.device
        with torch.inference_mode(), self._autocast():
            logits, iou = self.model.predict_masks(
                self._embedding,
                self._to_input(points),
                None if labels is None else labels.to(dev, torch.long),
                None if mask_input is None else mask_input.to(dev, torch.float32),
                multimask=multimask,
                boxes=self._to_input(box),
            )
            logits = logits.float()
            probabilities = torch.sigmoid(self._upscale(logits))
        return Prediction(logits, probabilities, probabilities > self.threshold, iou.float())


class Predictor(PredictorBase):
    """Stateful wrapper around a :class:`Sam3D` that caches one image embedding.

    ``predict`` takes ``B x N x 3`` voxel indices, ``B x 6`` boxes ``(d0, h0, w0, d1, h1, w1)``
    (box-capable models only) and ``B x 1 x L x L x L`` mask inputs; its probabilities are the
    trilinearly upsampled logits on the ``S^3`` model input. Arguments as
    :class:`PredictorBase`.
    """

    rank = 3
    point_layout = "voxel indices"
    box_layout = "(d0, h0, w0, d1, h1, w1) voxel corners"
    model: Sam3D

    def set_embedding(self, embedding: torch.Tensor) -> None:
        """Cache an embedding computed earlier (``B x E x G^3``: ``B`` crops, one prompt set each).

        With ``B > 1`` the next :meth:`predict` decodes prompt set ``b`` against embedding ``b``:
        several windows of one volume, each encoded once, decoded in one batch.
        """
        if embedding.ndim != 5:
            raise ValueError(f"an embedding is B x E x G x G x G, got {tuple(embedding.shape)}")
        self._embedding = embedding.to(self.device, torch.float32)

    def set_image(self, volume: torch.Tensor) -> None:
        """Encode ``volume`` (``1 x in_chans x S x S x S`` at the model's input size) and cache it."""
        cfg = self.model.config
        expected = (1, cfg.in_chans) + (cfg.img_size,) * 3
        if tuple(volume.shape) != expected:
            raise ValueError(
                f"set_image expects a {expected} tensor (resample/crop to the model input size "
                f"first), got {tuple(volume.shape)}"
            )
        with torch.inference_mode(), self._autocast():
            emb = self.model.image_encoder(volume.to(self.device, torch.float32))
        self._embedding = emb.float()

    def set_window(self, prepared: PreparedImage, box: Box) -> None:
        """Encode the model input of working-grid ``box`` of an image prepared by the model's
        preprocessing record (``Preprocessing.prepare``: what evaluation, ``predict`` and the
        registered model feed the encoder); points of :meth:`predict` are then voxel indices
        relative to ``box.start`` (``working - box.start``)."""
        size = self.model.config.img_size
        if tuple(box.size) != (size,) * 3:
            raise ValueError(f"the window must be the model input size {size}^3, got {box.size}")
        self.set_image(torch.from_numpy(prepared.window(box))[None, None])

    def _upscale(self, logits: torch.Tensor) -> torch.Tensor:
        return self.model.upscale_logits(logits, self.model.img_size)

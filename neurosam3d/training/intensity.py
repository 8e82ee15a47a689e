"""Per-volume intensity normalisation by modality.

Each volume is normalised on its own (never jointly over a batch, the seed's mistake), with
statistics from the whole volume, so a crop's values do not depend on where it was cut:

- CT: clip to a Hounsfield window (default [-1000, 1000]), then z-score;
- MR (and anything else): z-score.

The z-score uses the mean and standard deviation of the voxels above zero (the body / foreground),
as SAM-Med3D's preprocessing does (``ZNormalization(masking_method=lambda x: x > 0)``, after a
clamp for CT), so released checkpoints see the inputs they were trained on. With fewer than two
such voxels, or no spread, all voxels are used; a constant volume becomes zeros.

Models record the scaling their weights expect (``ModelConfig.input_scaling``):
``normalise_intensity(..., scaling="percentile")`` is the 3DINO encoder's (``dinov2_vitl3d``):
after the CT clip, the volume's 0.05 / 99.95 percentiles are mapped linearly to [-1, 1] and
values beyond them clipped (:func:`scale_percentile`).
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-6
#: percentiles mapped to -1 and 1 by ``scaling="percentile"`` (3DINO's input scaling)
PERCENTILES = (0.05, 99.95)


def scale_percentile(
    volume: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> np.ndarray:
    """float32 copy of ``volume`` with its ``percentiles`` mapped to [-1, 1], clipped there.

    A volume without spread between the two percentiles becomes zeros.
    """
    data = np.asarray(volume, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(data, percentiles))
    if hi - lo < _EPS:
        return np.zeros_like(data)
    out = (np.clip(data, lo, hi) - lo) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)
    return out.astype(np.float32, copy=False)


def normalise_intensity(
    volume: np.ndarray,
    modality: str,
    ct_window: tuple[float, float] = (-1000.0, 1000.0),
    scaling: str = "zscore",
) -> np.ndarray:
    """Normalised float32 copy of ``volume`` (any shape, any numeric dtype).

    ``scaling``: ``"zscore"`` (SAM-Med3D's, the default) or ``"percentile"``
    (:func:`scale_percentile`); the model's ``ModelConfig.input_scaling`` says which.
    """
    data = np.asarray(volume, dtype=np.float32)
    if modality.upper() == "CT":
        data = np.clip(data, ct_window[0], ct_window[1])
    if scaling == "percentile":
        return scale_percentile(data)
    if scaling != "zscore":
        raise ValueError(f"unknown intensity scaling {scaling!r}; use zscore or percentile")
    foreground = data[data > 0]
    if foreground.size < 2 or float(foreground.std()) < _EPS:
        foreground = data
    std = float(foreground.std())
    if std < _EPS:
        return np.zeros_like(data)
    return (data - float(foreground.mean())) / std

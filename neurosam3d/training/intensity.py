"""Per-volume intensity normalisation by modality.

Each volume is normalised on its own (never jointly over a batch, the seed's mistake), with
statistics from the whole volume, so a crop's values do not depend on where it was cut:

- CT: clip to a Hounsfield window (default [-1000, 1000]), then z-score;
- MR (and anything else): z-score.

The z-score uses the mean and standard deviation of the voxels above zero (the body / foreground),
as SAM-Med3D's preprocessing does (``ZNormalization(masking_method=lambda x: x > 0)``, after a
clamp for CT), so released checkpoints see the inputs they were trained on. With fewer than two
such voxels, or no spread, all voxels are used; a constant volume becomes zeros.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-6


def normalise_intensity(
    volume: np.ndarray, modality: str, ct_window: tuple[float, float] = (-1000.0, 1000.0)
) -> np.ndarray:
    """Normalised float32 copy of ``volume`` (any shape, any numeric dtype)."""
    data = np.asarray(volume, dtype=np.float32)
    if modality.upper() == "CT":
        data = np.clip(data, ct_window[0], ct_window[1])
    foreground = data[data > 0]
    if foreground.size < 2 or float(foreground.std()) < _EPS:
        foreground = data
    std = float(foreground.std())
    if std < _EPS:
        return np.zeros_like(data)
    return (data - float(foreground.mean())) / std

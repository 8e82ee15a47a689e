"""Per-volume intensity normalisation by modality.

Each volume is normalised on its own (never jointly over a batch, the seed's mistake), with
statistics from the whole volume, so a crop's values do not depend on where it was cut:

- CT: clip to a Hounsfield window (default [-1000, 1000]), then z-score;
- MR (and anything else): z-score.

The z-score uses the mean and standard deviation of the voxels above zero (the body / foreground),
as SAM-Med3D's preprocessing does (``ZNormalization(masking_method=lambda x: x > 0)``, after a
clamp for CT), so released checkpoints see the inputs they were trained on. With fewer than two
such voxels, or no spread, all voxels are used; a constant volume becomes zeros.

The two halves are separate so that a crop can be normalised without its volume:
:func:`intensity_stats` (z-score) or :func:`percentile_stats` computes a volume's
:class:`IntensityStats` once (the training store keeps both per case, :mod:`neurosam3d.store`),
:func:`apply_intensity` normalises any part of the volume with them. :func:`normalise_intensity`
(evaluation, inference) is the two in a row, so a store crop equals the same crop of the
normalised whole volume, voxel for voxel.

Three rules (``Preprocessing.intensity``, :mod:`neurosam3d.transforms.preprocessing`):

- ``"zscore"``: the above (CT window + foreground z-score, MR foreground z-score);
- ``"percentile"``: the 3DINO encoder's (``dinov2_vitl3d``): after the CT clip, the volume's
  0.05 / 99.95 percentiles are mapped linearly to [-1, 1] and values beyond them clipped
  (:func:`scale_percentile`). The percentiles are exact order statistics of the stored
  values (numpy's default "linear" method), found by a histogram of integer volumes or
  ``np.partition`` in the stored dtype (:func:`percentile_stats`), never from a float copy;
  the training store keeps them per case next to the z-score statistics;
- ``"crop_zscore"``: upstream SAM-Med3D's (release checkpoints without a record): each model
  input crop, padded with 0, z-normalised on its own voxels above 0 with torchio's
  ``ZNormalization.znorm`` (no CT window): :func:`zscore_crop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-6
DEFAULT_CT_WINDOW = (-1000.0, 1000.0)
#: percentiles mapped to -1 and 1 by ``scaling="percentile"`` (3DINO's input scaling)
PERCENTILES = (0.05, 99.95)
#: Voxels per slab of :func:`intensity_stats_by_slab` and the percentile histogram (their only
#: temporaries are slab-sized).
_SLAB_VOXELS = 1 << 22
#: Widest value range (max - min + 1) of an integer volume whose percentiles come from a
#: histogram (int16 CT: 65,536 at most); wider ranges use ``np.partition``.
_HISTOGRAM_BINS = 1 << 24
#: Voxels per slab of the histogram (its one int64 temporary: 2 MB).
_HISTOGRAM_SLAB = 1 << 18


#: Volume-level scaling rules :class:`IntensityStats` describes.
SCALINGS = ("zscore", "percentile")


def check_scaling(scaling: str) -> str:
    """``scaling`` if it is one of :data:`SCALINGS`, else ``ValueError`` naming it."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown intensity scaling {scaling!r}; use zscore or percentile")
    return scaling


@dataclass(frozen=True)
class IntensityStats:
    """What normalising one volume needs.

    ``window``: CT clip window (HU) or None (MR); ``minimum``: the smallest (clipped) voxel,
    whose normalised value pads crops that leave the volume; ``scaling``: the rule
    (:data:`SCALINGS`).

    ``"zscore"``: ``mean``/``std`` are of the (clipped) voxels above zero, or of all voxels when
    fewer than two are above zero or they do not spread (``std`` 0: the volume is constant and
    normalises to zeros). ``"percentile"``: ``bounds`` are the (clipped) volume's values at the
    two percentiles, mapped to -1 and 1 (equal bounds: the volume normalises to zeros);
    ``mean``/``std`` are not used.
    """

    window: tuple[float, float] | None
    mean: float
    std: float
    minimum: float
    scaling: str = "zscore"
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_scaling(self.scaling)
        if self.scaling == "percentile" and self.bounds is None:
            raise ValueError("percentile scaling needs the bounds (the volume's percentiles)")

    @property
    def background(self) -> float:
        """The normalised value of the volume's minimum (the padding value of crops)."""
        return float(apply_intensity(np.array([self.minimum], np.float32), self)[0])


def _clipped(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    data = np.asarray(volume, dtype=np.float32)
    return np.clip(data, window[0], window[1]) if window is not None else data


def ct_window_for(
    modality: str, ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW
) -> tuple[float, float] | None:
    """The clip window of ``modality``: ``ct_window`` for CT, None otherwise (or when
    ``ct_window`` is None: no clip)."""
    if ct_window is None or modality.upper() != "CT":
        return None
    return (float(ct_window[0]), float(ct_window[1]))


def intensity_stats(
    volume: np.ndarray, modality: str, ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW
) -> IntensityStats:
    """The statistics of a whole ``volume`` (any shape, any numeric dtype)."""
    window = ct_window_for(modality, ct_window)
    data = _clipped(volume, window)
    foreground = data[data > 0]
    if foreground.size < 2 or float(foreground.std()) < _EPS:
        foreground = data
    std = float(foreground.std())
    return IntensityStats(
        window=window,
        mean=float(foreground.mean()),
        std=std if std >= _EPS else 0.0,
        minimum=float(data.min()) if data.size else 0.0,
    )


def apply_intensity(part: np.ndarray, stats: IntensityStats) -> np.ndarray:
    """Normalised float32 copy of ``part`` (the whole volume or any crop of it)."""
    data = _clipped(part, stats.window)
    if stats.scaling == "percentile":
        assert stats.bounds is not None  # checked by IntensityStats
        lo, hi = stats.bounds
        if hi - lo < _EPS:
            return np.zeros_like(data)
        out = (np.clip(data, lo, hi) - lo) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)
        return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)
    if stats.std == 0.0:
        return np.zeros_like(data)
    return (data - stats.mean) / stats.std


def _integer_order_statistics(flat: np.ndarray, ranks: np.ndarray) -> np.ndarray | None:
    """The ``ranks``-th smallest values of an integer ``flat`` (int64), from a histogram built
    slab by slab (temporaries: one slab and the histogram); None if the value range is too
    wide for a histogram."""
    low, high = int(flat.min()), int(flat.max())
    if high - low >= _HISTOGRAM_BINS:
        return None
    counts = np.zeros(high - low + 1, dtype=np.int64)
    for first in range(0, flat.size, _HISTOGRAM_SLAB):
        slab = flat[first : first + _HISTOGRAM_SLAB].astype(np.int64)
        slab -= low
        counts += np.bincount(slab, minlength=counts.size)
    return np.searchsorted(np.cumsum(counts), ranks, side="right") + low


def _order_statistics(volume: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The ``ranks``-th smallest values (0-based, sorted) of ``volume``, float64, exact.

    Integer volumes: a histogram (no copy of the volume); others: ``np.partition`` of one
    flat copy in the stored dtype.
    """
    flat = np.asarray(volume).ravel(order="K")
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    if flat.dtype.kind in "iu":
        found = _integer_order_statistics(flat, ranks)
        if found is not None:
            return found.astype(np.float64)
    return np.partition(flat, ranks)[ranks].astype(np.float64)


def percentile_stats(
    volume: np.ndarray,
    modality: str,
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
    percentiles: tuple[float, float] = PERCENTILES,
) -> IntensityStats:
    """The ``"percentile"`` statistics of a whole ``volume`` (any shape, numeric dtype).

    ``bounds``: the CT-clipped volume's values at ``percentiles``, as ``np.percentile`` (its
    default "linear" method) of the clipped volume gives them (to float rounding of the
    interpolation); computed from exact order statistics of the stored values (clipping is
    monotone, so the clipped volume's order statistics are the clipped stored ones), without a
    float copy of the volume.
    """
    window = ct_window_for(modality, ct_window)
    n = int(np.asarray(volume).size)
    if n == 0:
        return IntensityStats(window, 0.0, 0.0, 0.0, "percentile", (0.0, 0.0))
    positions = (n - 1) * np.asarray(percentiles, dtype=np.float64) / 100.0
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    ranks = np.unique(np.concatenate([[0], below, above]))
    values = dict(zip(ranks.tolist(), _order_statistics(volume, ranks).tolist(), strict=True))
    if window is not None:
        values = {k: min(max(v, window[0]), window[1]) for k, v in values.items()}
    bounds = []
    for k0, k1, t in zip(below.tolist(), above.tolist(), (positions - below).tolist(), strict=True):
        a, b = values[k0], values[k1]
        diff = b - a  # numpy's _lerp (float64, as np.percentile computes it)
        bounds.append(b - diff * (1.0 - t) if t >= 0.5 else a + diff * t)
    return IntensityStats(
        window=window,
        mean=0.0,
        std=0.0,
        minimum=values[0],
        scaling="percentile",
        bounds=(bounds[0], bounds[1]),
    )


def scale_percentile(
    volume: np.ndarray, percentiles: tuple[float, float] = PERCENTILES
) -> np.ndarray:
    """float32 copy of ``volume`` with its ``percentiles`` mapped to [-1, 1], clipped there.

    A volume without spread between the two percentiles becomes zeros.
    """
    return apply_intensity(volume, percentile_stats(volume, "MR", None, percentiles))


def volume_stats(
    volume: np.ndarray,
    modality: str,
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
    scaling: str = "zscore",
    percentiles: tuple[float, float] = PERCENTILES,
) -> IntensityStats:
    """The statistics of ``volume`` for ``scaling`` without float copies of it: z-score
    :func:`intensity_stats_by_slab`, percentile :func:`percentile_stats`."""
    if check_scaling(scaling) == "percentile":
        return percentile_stats(volume, modality, ct_window, percentiles)
    return intensity_stats_by_slab(volume, modality, ct_window)


def normalise_intensity(
    volume: np.ndarray,
    modality: str,
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
    scaling: str = "zscore",
    percentiles: tuple[float, float] = PERCENTILES,
) -> np.ndarray:
    """Normalised float32 copy of ``volume`` (any shape, any numeric dtype).

    ``scaling``: ``"zscore"`` (SAM-Med3D's, the default) or ``"percentile"``
    (:func:`percentile_stats` with ``percentiles`` after the CT clip); ``ct_window`` None: no
    clip. Per-crop ``"crop_zscore"`` is :func:`zscore_crop`, applied to each model input.
    """
    if check_scaling(scaling) == "percentile":
        return apply_intensity(volume, percentile_stats(volume, modality, ct_window, percentiles))
    return apply_intensity(volume, intensity_stats(volume, modality, ct_window))


def intensity_stats_by_slab(
    volume: np.ndarray, modality: str, ct_window: tuple[float, float] = DEFAULT_CT_WINDOW
) -> IntensityStats:
    """:func:`intensity_stats` of a volume too large for float copies (full-size CTs).

    The clip and the sums run slab by slab in float64, so only slab-sized temporaries are made;
    same foreground rule, same statistics up to float32 rounding (7th digit). Pair it with
    :func:`apply_intensity` on crops to normalise without a normalised copy of the volume.
    """
    window = ct_window_for(modality, ct_window)
    flat = np.asarray(volume).ravel(order="K")  # a view of a C- or F-contiguous volume

    def slabs():
        for first in range(0, flat.size, _SLAB_VOXELS):
            yield _clipped(flat[first : first + _SLAB_VOXELS], window).astype(np.float64)

    sums = np.zeros((2, 2))  # (foreground, all) x (count, sum)
    minimum = np.inf
    for part in slabs():
        fg = part[part > 0]
        sums += [[fg.size, fg.sum()], [part.size, part.sum()]]
        minimum = min(minimum, float(part.min()))
    means = sums[:, 1] / np.maximum(sums[:, 0], 1)
    squares = np.zeros(2)
    for part in slabs():
        squares += [((part[part > 0] - means[0]) ** 2).sum(), ((part - means[1]) ** 2).sum()]
    stds = np.sqrt(squares / np.maximum(sums[:, 0], 1))
    use = 0 if sums[0, 0] >= 2 and stds[0] >= _EPS else 1
    return IntensityStats(
        window=window,
        mean=float(means[use]),
        std=float(stds[use]) if stds[use] >= _EPS else 0.0,
        minimum=minimum if flat.size else 0.0,
    )


def zscore_crop(crop: np.ndarray) -> np.ndarray:
    """Upstream SAM-Med3D's input normalisation of one model input crop (float32 copy).

    torchio ``ZNormalization(masking_method=lambda x: x > 0)`` on the crop (torchio's own
    ``znorm``, so the statistics are upstream's, unbiased standard deviation included); a crop
    whose voxels above 0 do not spread (or that has none) becomes zeros.
    """
    import torch
    import torchio as tio

    tensor = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))
    mask = tensor > 0
    if int(mask.sum()) < 2:
        return np.zeros(crop.shape, np.float32)
    out = tio.ZNormalization.znorm(tensor, mask)
    if out is None:
        return np.zeros(crop.shape, np.float32)
    return out.numpy().astype(np.float32, copy=False)

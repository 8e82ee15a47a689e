"""An image volume normalised on read: the stored voxels plus their intensity statistics.

A full-size CT (488 x 404 x 224 int16, 88 MB) becomes 177 MB as a normalised float32 copy, and
the copy is made by float temporaries of the same size. :class:`NormalisedVolume` keeps the
stored array as it is and normalises only what is read from it (a window's crop, a slice),
with statistics of the whole volume computed without float copies of it
(:func:`~neurosam3d.transforms.intensity.volume_stats`: the z-score slab by slab, the
percentiles from a histogram or ``np.partition`` in the stored dtype), so a crop equals the
same crop of :func:`~neurosam3d.transforms.intensity.normalise_intensity`'s result (exactly
for the percentile rule, up to float32 rounding of the statistics for the z-score).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from neurosam3d.transforms.intensity import (
    DEFAULT_CT_WINDOW,
    PERCENTILES,
    IntensityStats,
    apply_intensity,
    volume_stats,
)


class NormalisedVolume:
    """``stored`` (I x J x K, any numeric dtype) read through ``stats``: float32 on indexing.

    ``volume[key]`` is ``apply_intensity(stored[key], stats)``; :meth:`min` is the normalised
    value of the darkest voxel (the padding value of crops). ``np.asarray(volume)`` normalises
    the whole volume (a full float32 copy: avoid it on large volumes).
    """

    def __init__(self, stored: np.ndarray, stats: IntensityStats) -> None:
        self.stored = stored
        self.stats = stats

    @classmethod
    def from_image(
        cls,
        image: nib.Nifti1Image,
        modality: str,
        ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
        scaling: str = "zscore",
        percentiles: tuple[float, float] = PERCENTILES,
    ) -> NormalisedVolume:
        """The stored voxels of ``image`` (read once, in their dtype) and their statistics for
        ``scaling`` (``"zscore"`` or ``"percentile"``)."""
        stored = np.asarray(image.dataobj)
        return cls(stored, volume_stats(stored, modality, ct_window, scaling, percentiles))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    @property
    def ndim(self) -> int:
        return self.stored.ndim

    def __getitem__(self, key) -> np.ndarray:
        return apply_intensity(self.stored[key], self.stats)

    def min(self) -> float:
        """Normalised value of the smallest (clipped) voxel."""
        return self.stats.background

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = apply_intensity(self.stored, self.stats)
        return out if dtype is None else out.astype(dtype, copy=False)

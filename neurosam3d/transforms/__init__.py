"""Preprocessing and geometry: the one implementation every path uses (the contract).

Below :mod:`neurosam3d.data`, :mod:`neurosam3d.training`, :mod:`neurosam3d.evaluation`,
:mod:`neurosam3d.inference` and :mod:`neurosam3d.registry`, importing none of them:

* :mod:`.geometry`: reorientation, resampling (the package's one grid convention: voxel
  indices are voxel centres, resampling keeps the field of view's centre and takes
  ``floor(n * spacing / target)`` voxels, as torchio's ``Resample``), crop and pad to model
  windows and their exact inverses;
* :mod:`.resample`: whole-array resampling onto a planned grid (``prepare``);
* :mod:`.intensity`: intensity normalisation per modality (CT window + z-score, MR foreground
  z-score, percentile scaling to [-1, 1], upstream's per-crop z-score);
* :mod:`.preprocessing`: the :class:`Preprocessing` record stored with every model, and
  :meth:`Preprocessing.prepare`, which applies it.
"""

from neurosam3d.transforms.preprocessing import (
    NATIVE,
    PREPROCESSING_KEY,
    PreparedImage,
    Preprocessing,
    PreprocessingError,
    record_from_metadata,
)

__all__ = [
    "NATIVE",
    "PREPROCESSING_KEY",
    "PreparedImage",
    "Preprocessing",
    "PreprocessingError",
    "record_from_metadata",
]

"""The :class:`~neurosam3d.transforms.Preprocessing` record of a training run, and the check
that the training data are what it says.

Training crops come from the training store, on the grid ``neurosam3d prepare`` wrote
(``--orientation``, ``--spacing-mm``) and normalised by the model's input scaling
(``model.config.input_scaling``: foreground z-score, or the 0.05 / 99.95 percentiles mapped to
[-1, 1]) after the CT clip ``data.ct_window``, with the statistics the store holds for each
case. The record states exactly that, so whatever reads a checkpoint prepares inputs as the
validation step saw them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from neurosam3d.training.config import DataConfig, TrainConfig
from neurosam3d.training.samples import SampleTable
from neurosam3d.transforms import Preprocessing

#: Voxel sizes within this (mm) of ``data.spacing_mm`` are that spacing.
SPACING_ATOL_MM = 1e-3


def training_preprocessing(cfg: TrainConfig) -> Preprocessing:
    """The record of the crops training reads: ``data.orientation``, ``data.spacing_mm``,
    ``data.ct_window`` + the model's input scaling (``"zscore"`` or ``"percentile"``, with the
    training store's statistics and the default percentiles the store holds), the model's
    input size, channel 0 (the primary channel, the one the store holds)."""
    arch = cfg.model.architecture()
    return Preprocessing(
        orientation=cfg.data.orientation,
        spacing_mm=cfg.data.spacing_mm,
        intensity=arch.input_scaling,
        ct_window=cfg.data.ct_window,
        input_size=arch.img_size,
        channel=0,
    )


def check_training_grid(table: SampleTable, cfg: DataConfig) -> None:
    """Refuse rows whose images are not on the grid ``data.orientation`` / ``data.spacing_mm``
    say (the message names the image and what it is); nothing to check when both are None."""
    if cfg.spacing_mm is not None and len(table):
        wanted = np.asarray(cfg.spacing_mm, dtype=np.float64)
        bad = np.flatnonzero(~np.all(np.abs(table.spacing - wanted) <= SPACING_ATOL_MM, axis=1))
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"{Path(table.root) / table.image_path[row]}: voxel size "
                f"{table.spacing[row].tolist()} mm, but data.spacing_mm is {list(cfg.spacing_mm)} "
                f"({bad.size} rows): prepare the data with --spacing-mm, or set data.spacing_mm "
                "to what they are"
            )
    if cfg.orientation is not None:
        wanted_codes = tuple(cfg.orientation.upper())
        for path in sorted(set(table.image_path.tolist())):
            full = Path(table.root) / path
            codes = nib.aff2axcodes(nib.load(full).affine)  # the header only
            if tuple(codes) != wanted_codes:
                raise ValueError(
                    f"{full}: axes {''.join(codes)}, but data.orientation is {cfg.orientation}: "
                    "prepare the data with --orientation, or set data.orientation to null"
                )

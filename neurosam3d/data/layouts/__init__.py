"""Registry of raw dataset layout kinds; a dataset is a config entry naming one of them.

Each layout is a function ``discover(config, root) -> Discovery`` that lists cases and their
files without opening any image (:mod:`neurosam3d.data.cases`). Registered kinds:

- ``nnunet``: nnU-Net v2 raw, ``imagesTr/<case>_0000<ending>``, ``labelsTr/<case><ending>``,
  ``dataset.json`` (``labels`` name -> value, ``channel_names``, ``file_ending``).
- ``msd``: Medical Segmentation Decathlon ``TaskXX_Name``, ``dataset.json`` with ``labels``
  value -> name, ``modality`` and the ``training`` list; 4D multi-channel images.
- ``totalsegmentator``: subject folders ``<id>/ct.nii.gz`` + ``<id>/segmentations/<class>.nii.gz``,
  splits from ``meta.csv``.
- ``per_case``: one folder per case (KiTS23 ``case_XXXXX/imaging.nii.gz`` by default; BraTS via
  ``splits`` templates).
- ``paired``: image and label folders per split (AMOS ``imagesTr/labelsTr/imagesVa/labelsVa``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from neurosam3d.data.cases import Discovery
from neurosam3d.data.config import LAYOUT_NAMES, DatasetConfig
from neurosam3d.data.layouts.msd import discover_msd
from neurosam3d.data.layouts.nnunet import discover_nnunet
from neurosam3d.data.layouts.templates import discover_paired, discover_per_case
from neurosam3d.data.layouts.totalsegmentator import discover_totalsegmentator

Layout = Callable[[DatasetConfig, Path], Discovery]

LAYOUTS: dict[str, Layout] = {
    "nnunet": discover_nnunet,
    "msd": discover_msd,
    "totalsegmentator": discover_totalsegmentator,
    "per_case": discover_per_case,
    "paired": discover_paired,
}
if tuple(LAYOUTS) != LAYOUT_NAMES:  # a layout added here must be named in data.config too
    raise RuntimeError(f"data.config.LAYOUT_NAMES {LAYOUT_NAMES} != layouts {tuple(LAYOUTS)}")

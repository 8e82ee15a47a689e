"""TorchIO augmentations built from the YAML configuration.

``data.augment`` is a list of ``{name: <torchio transform class>, **kwargs}`` entries, e.g.::

    augment:
      - {name: RandomFlip, axes: [0, 1, 2], flip_probability: 0.5}
      - {name: RandomAffine, scales: 0.1, degrees: 10, p: 0.3}
      - {name: RandomGamma, log_gamma: 0.2, p: 0.3}

Only random transforms (``tio.RandomTransform`` subclasses) are accepted: preprocessing such as
normalisation is fixed by the data module, not the augmentation list. Transforms are applied to
the image crop (linear interpolation) and the target crop (a label map: nearest neighbour), and
are seeded per sample so that every sample is reproducible from (row, seed).

**World space.** Each crop is a torchio subject with its real voxel size (the affine
``diag(spacing)`` of the case's grid: voxel axes are orthogonal, so that is the crop's geometry
up to a rigid motion, which no augmentation depends on). torchio's spatial transforms work in
millimetres, so on an anisotropic grid (5 mm AMOS slices, the 0.5 x 0.5 x 7.5 mm T2*):

- ``RandomAffine``: ``degrees`` rotate and ``scales`` scale in mm about the crop's centre, then
  the crop is resampled onto its own grid: a rotation stays a rotation (in voxel space it
  would be a shear), but voxels rotated out of the thick axis are interpolated along it;
  ``translation`` is in mm;
- ``RandomElasticDeformation``: control-point displacements (``max_displacement``) in mm;
- ``RandomFlip``: flips voxel axes: exact on any grid (a flip of a thick axis flips slices);
- ``RandomAnisotropy``: downsamples one axis and back, in voxels of that axis;
- ``RandomBlur``: ``std`` in mm, so fewer voxels along a thick axis;
- ``RandomMotion``, ``RandomGhosting``, ``RandomSpike``, ``RandomBiasField``, ``RandomGamma``,
  ``RandomNoise``: intensity artefacts, independent of the voxel size (motion's rotations and
  translations are in degrees and mm, like ``RandomAffine``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class AugmentError(ValueError):
    """An invalid ``data.augment`` entry."""


def build_augmentation(entries: Sequence[dict[str, Any]]) -> Any | None:
    """A ``tio.Compose`` of the configured transforms, or ``None`` for an empty list."""
    if not entries:
        return None
    import torchio as tio
    from torchio.transforms.augmentation.random_transform import RandomTransform

    transforms = []
    for i, entry in enumerate(entries):
        kwargs = dict(entry)
        name = kwargs.pop("name", None)
        cls = getattr(tio, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, RandomTransform)):
            raise AugmentError(
                f"data.augment[{i}]: {name!r} is not a torchio random transform "
                f"(e.g. RandomFlip, RandomAffine, RandomGamma, RandomNoise)"
            )
        kwargs.setdefault("copy", False)  # see below
        try:
            transforms.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise AugmentError(f"data.augment[{i}] ({name}): {exc}") from exc
    # copy=False: the subject is built afresh from each crop (apply_augmentation), so torchio's
    # default deep copy of it before every transform only costs time (7x of a 128^3 flip)
    return tio.Compose(transforms, copy=False)


def crop_affine(spacing: np.ndarray) -> np.ndarray:
    """The 4 x 4 voxel -> mm affine a crop's torchio subject carries: ``diag(spacing, 1)``."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag(np.asarray(spacing, dtype=np.float64))
    return affine


def apply_augmentation(
    transform: Any,
    image: np.ndarray,
    mask: np.ndarray,
    seed: int,
    spacing: np.ndarray = np.ones(3),  # noqa: B008 (read-only)
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one ``D x H x W`` crop pair with torch's RNG seeded by ``seed`` (restored after).

    ``spacing``: the crop's voxel size in mm along its three axes (module docstring).
    """
    import torchio as tio

    affine = crop_affine(spacing)
    subject = tio.Subject(
        image=tio.ScalarImage(
            tensor=torch.from_numpy(np.ascontiguousarray(image))[None], affine=affine
        ),
        target=tio.LabelMap(
            tensor=torch.from_numpy(np.ascontiguousarray(mask))[None], affine=affine
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = transform(subject)
    return out["image"].data[0].numpy(), out["target"].data[0].numpy()

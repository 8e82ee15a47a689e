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


def apply_augmentation(
    transform: Any, image: np.ndarray, mask: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one ``D x H x W`` crop pair with torch's RNG seeded by ``seed`` (restored after)."""
    import torchio as tio

    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(image))[None]),
        target=tio.LabelMap(tensor=torch.from_numpy(np.ascontiguousarray(mask))[None]),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = transform(subject)
    return out["image"].data[0].numpy(), out["target"].data[0].numpy()

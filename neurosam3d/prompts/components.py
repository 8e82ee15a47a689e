"""Connected components and distance transforms of batched binary masks.

Both run per batch item with :mod:`scipy.ndimage` on the CPU, on the mask's bounding box only (a
128^3 crop whose target fills a small part costs a fraction of the full volume). Masks on a GPU are
copied to the host for this and the results copied back; everything else in the click rules stays
batched on the masks' device. Connectivity is 26 (face, edge and corner neighbours), as in the
CVPR 2025 interactive-segmentation challenge's click simulation.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask`` (D x H x W bool), or ``None`` when it is empty."""
    objects = ndimage.find_objects(mask.astype(np.uint8))
    return objects[0] if objects else None


def largest_component_np(mask: np.ndarray) -> np.ndarray:
    """Largest 26-connected component of one D x H x W bool mask (empty in, empty out).

    Ties between equally large components go to the lowest component label, i.e. the one whose
    first voxel comes first in C order, so the result is deterministic.
    """
    out = np.zeros_like(mask, dtype=bool)
    box = _bbox(mask)
    if box is None:
        return out
    labels, count = ndimage.label(mask[box], structure=_STRUCTURE_26)
    if count == 1:
        out[box] = labels == 1
        return out
    sizes = np.bincount(labels.ravel())[1:]
    out[box] = labels == int(np.argmax(sizes)) + 1
    return out


def component_sizes_np(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label the 26-connected components of ``mask`` (D x H x W bool).

    Returns ``(labels, sizes)``: int32 labels (0 background, 1..n components) and the n sizes in
    voxels (int64, ``sizes[i]`` for label ``i + 1``).
    """
    labels, count = ndimage.label(mask, structure=_STRUCTURE_26)
    return labels, np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)


def deepest_voxel_np(mask: np.ndarray) -> tuple[int, int, int]:
    """Voxel of ``mask`` (D x H x W bool, non-empty) farthest from its boundary.

    The Euclidean distance transform is taken in voxel units with the volume border counting as
    boundary (the mask is zero-padded), so a region cut by the crop edge has its centre inside the
    crop. Ties go to the first voxel in C order. An axis of length 1 in ``mask`` is not padded:
    a ``1 x H x W`` mask is a 2-D slice (the ``slice2d`` protocol) and its transform is 2-D.
    """
    box = _bbox(mask)
    if box is None:
        raise ValueError("deepest_voxel_np needs a non-empty mask")
    widths = [(0, 0) if n == 1 else (1, 1) for n in mask.shape]
    inner = tuple(slice(None) if n == 1 else slice(1, -1) for n in mask.shape)
    distance = ndimage.distance_transform_edt(np.pad(mask[box], widths))[inner]
    local = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return tuple(int(s.start + i) for s, i in zip(box, local, strict=True))  # type: ignore[return-value]


def largest_component(masks: torch.Tensor) -> torch.Tensor:
    """Largest 26-connected component of each item of ``masks`` (B x D x H x W bool).

    Returns a B x D x H x W bool tensor on the input's device; an empty item stays empty.
    """
    host = masks.detach().to("cpu", torch.bool).numpy()
    out = np.stack([largest_component_np(item) for item in host])
    return torch.from_numpy(out).to(masks.device)

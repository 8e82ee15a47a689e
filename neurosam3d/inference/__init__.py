"""Segmentation of user volumes from real clicks (``neurosam3d predict``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from neurosam3d.inference.prompts import check_affine, check_inside, parse_box, parse_points
from neurosam3d.inference.segment import Segmentation, segment
from neurosam3d.io.nifti import as_3d, load_nifti, make_image, save_nifti

logger = logging.getLogger(__name__)

__all__ = ["Segmentation", "predict_file", "segment"]


def predict_file(
    model: torch.nn.Module,
    image_path: str | os.PathLike[str],
    points: list[str],
    out: str | os.PathLike[str],
    *,
    world: bool = False,
    box: str | None = None,
    probabilities_out: str | os.PathLike[str] | None = None,
    channel: int | None = None,
    **options,
) -> Segmentation:
    """Segment ``image_path`` from ``x,y,z,+/-`` point strings and write the mask to ``out``.

    The mask is uint8 (0/1) on exactly the image's grid (same shape and affine, sform = qform),
    written atomically and deterministically; ``options`` go to :func:`segment`. A trailing
    singleton axis (``X x Y x Z x 1``) is dropped; a multi-channel image (``X x Y x Z x C``, e.g.
    an MSD 4D image) needs ``channel`` to select one volume, else ``ValueError`` naming the file
    and its shape. The mask is on the 3D grid.
    """
    image = as_3d(
        load_nifti(image_path, check_finite=True),
        image_path,
        channel=channel,
        hint="select one with --channel N",
    )
    check_affine(image.affine, str(image_path))  # before segmenting, not when saving the mask
    data = np.asanyarray(image.dataobj)
    if data.size and data.min() == data.max():
        logger.warning(
            "%s is constant (every voxel %s): the mask cannot follow any structure",
            image_path,
            data.flat[0],
        )
    coords, labels = parse_points(points, image.affine, world=world)
    check_inside(coords, image.shape)
    corners = None
    if box is not None:
        corners = parse_box(box, image.affine, world=world)
        check_inside(corners, image.shape, "box corner")
    result = segment(model, image, coords, labels, box=corners, **options)
    save_nifti(make_image(result.mask.astype(np.uint8), image.affine, like=image), out)
    if probabilities_out is not None:
        save_nifti(make_image(result.probabilities, image.affine, like=image), probabilities_out)
    logger.info("wrote %s (%d voxels)", Path(out), int(result.mask.sum()))
    return result

"""Label sources of a case, placed on its image grid: a label map, or one file per class.

Both yield ``(class, box, mask, voxel count)``: a binary uint8 mask (I, J, K) in Fortran order on
exactly the target grid, its half-open voxel box and its foreground count. A label map is read
once and all its classes come from one ``find_objects`` pass; per-class files are read one at a
time so that only one is in memory. A source on another grid is placed by world coordinates
(nearest neighbour); one that does not overlap the image is rejected (``grid_mismatch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from neurosam3d.data import grid
from neurosam3d.data.cases import CaseSpec
from neurosam3d.data.grid import Grid
from neurosam3d.data.labels import ClassSpec
from neurosam3d.data.masks import box_of, label_boxes, union_box
from neurosam3d.data.problems import CaseRejected, Kind, Problem
from neurosam3d.data.volumes import integer_labels, read_nifti, squeeze_to_3d
from neurosam3d.transforms.resample import resample_nearest


def on_grid(
    data: np.ndarray, affine: np.ndarray, target: Grid, rel: str, allow_resampling: bool = False
) -> np.ndarray:
    """``data`` placed on the target grid (nearest neighbour by world coordinates).

    A label grid rotated or sheared against the image (beyond ``grid.AXIS_ALIGNED_DEG``) is
    rejected unless ``allow_resampling`` (the dataset config's ``allow_label_resampling``):
    nearest-neighbour resampling would then move label boundaries by up to half a voxel.
    """
    if grid.same_grid(data.shape, affine, target.shape, target.affine):
        return data
    if not grid.overlaps(data.shape, affine, target.shape, target.affine):
        raise CaseRejected(
            Kind.GRID_MISMATCH,
            rel,
            f"label grid {data.shape} does not overlap the image grid {target.shape} in world "
            "space (a different subject or a wrong affine?)",
        )
    angle = grid.misalignment_deg(affine, target.affine)
    if angle > grid.AXIS_ALIGNED_DEG and not allow_resampling:
        raise CaseRejected(
            Kind.GRID_MISMATCH,
            rel,
            f"label grid is rotated or sheared by {angle:.2f} degrees against the image grid; "
            "set allow_label_resampling: true in the dataset config to resample it (nearest "
            "neighbour)",
        )
    placed = resample_nearest(data, affine, target.shape, target.affine)
    if data.any() and not placed.any():
        raise CaseRejected(
            Kind.GRID_MISMATCH, rel, "no labelled voxel of this label falls inside the image"
        )
    return placed


def load_label_map(spec: CaseSpec, path: Path, target: Grid) -> np.ndarray:
    rel = spec.relative(path)
    image = read_nifti(path, spec.relative)
    data = squeeze_to_3d(np.asanyarray(image.dataobj), rel, Kind.LABEL_4D, "label map")
    labels = integer_labels(data, rel)
    labels = on_grid(labels, image.affine, target, rel, spec.allow_label_resampling)
    if not labels.any():
        raise CaseRejected(Kind.EMPTY_LABEL, rel, "label map is all zero (no labelled voxel)")
    return labels


def classes_in_label_map(
    spec: CaseSpec, labels: np.ndarray, problems: list[Problem]
) -> list[tuple[ClassSpec, tuple[slice, slice, slice]]]:
    """The classes present in ``labels`` with their boxes; unknown values become a problem."""
    boxes = label_boxes(labels)
    mapped = {v for c in spec.classes for v in c.values} | set(spec.known_values)
    unknown = sorted(set(boxes) - mapped)
    if unknown:
        voxels = int(np.count_nonzero(np.isin(labels, unknown)))
        problems.append(
            Problem(
                spec.dataset,
                spec.case_id,
                None,
                spec.relative(spec.label_map) if spec.label_map else "",
                f"label values {unknown} ({voxels} voxels) are not in the label map; "
                "they are left out of every mask (add them to the config's labels to keep them)",
                Kind.UNKNOWN_LABEL_VALUE,
            )
        )
    found = []
    for cls in spec.classes:
        present = [boxes[v] for v in cls.values if v in boxes]
        if present:
            found.append((cls, present[0] if len(present) == 1 else union_box(present)))
    return found


def class_file_masks(
    spec: CaseSpec, target: Grid, problems: list[Problem]
) -> Iterator[tuple[ClassSpec, tuple[slice, slice, slice], np.ndarray, int]]:
    """Yield (class, box, uint8 mask, voxel count) per non-empty class file, one file at a time.

    A file that cannot be used rejects its class only (a problem with ``class_name``).
    """
    for cls, path in spec.class_files:
        rel = spec.relative(path)
        try:
            image = read_nifti(path, spec.relative)
            data = squeeze_to_3d(np.asanyarray(image.dataobj), rel, Kind.LABEL_4D, "class mask")
            labels = integer_labels(data, rel)
            data = on_grid(labels, image.affine, target, rel, spec.allow_label_resampling)
        except CaseRejected as exc:
            problems.append(
                Problem(spec.dataset, spec.case_id, cls.name, exc.path, exc.problem, exc.kind)
            )
            continue
        mask = np.asfortranarray(np.not_equal(data, 0).view(np.uint8))
        box = box_of(mask)
        if box is not None:
            yield cls, box, mask, int(np.count_nonzero(mask[box]))

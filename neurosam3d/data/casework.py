"""Prepare one case: read each raw file once, write the image once and one mask per class present.

:func:`run_case` is what a worker process runs. It skips a case whose record says nothing
changed (:mod:`neurosam3d.data.records`); otherwise it loads and validates the image channels
and the label map *before* writing, writes the image channel(s) in their native dtype, then one
binary uint8 mask per class present on exactly the image grid
(:mod:`neurosam3d.data.label_sources`), then the case's training-store entry from the same
arrays (:mod:`neurosam3d.store`), then the record. Stale
outputs of an earlier version of the case are removed. Paths in rows are POSIX, relative to the
output root; bounding boxes are half-open voxel indices (i, j, k); spacing is in mm.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from neurosam3d.data import grid
from neurosam3d.data.cases import CaseSpec
from neurosam3d.data.grid import Grid
from neurosam3d.data.label_sources import class_file_masks, classes_in_label_map, load_label_map
from neurosam3d.data.labels import ClassSpec, sanitise_class_name
from neurosam3d.data.masks import (
    MASK_COMPRESSLEVEL,
    MaskEncoder,
    class_masks,
    sha256_hex,
)
from neurosam3d.data.problems import CaseRejected, Kind, Problem
from neurosam3d.data.records import (
    FORMAT_VERSION,
    Digest,
    known_digest,
    outputs_intact,
    read_record,
    record_path,
    write_record,
)
from neurosam3d.data.volumes import (
    check_finite,
    native_array,
    read_nifti,
    squeeze_to_3d,
)
from neurosam3d.io.atomic import OutputError, atomic_write_bytes
from neurosam3d.io.nifti import DEFAULT_COMPRESSLEVEL, make_image, nifti_bytes
from neurosam3d.io.paths import safe_join
from neurosam3d.store import layout as store_layout
from neurosam3d.store.encode import EntryBuilder
from neurosam3d.transforms.geometry import plan_grid, reoriented
from neurosam3d.transforms.resample import resample_linear

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareParams:
    """Parameters that change the output: optional target spacing (mm) and orientation (axis
    codes, e.g. ``"RAS"``), image igzip level (1-3)."""

    spacing_mm: tuple[float, float, float] | None = None
    compresslevel: int = DEFAULT_COMPRESSLEVEL
    orientation: str | None = None

    def as_key(self) -> dict[str, Any]:
        spacing = list(self.spacing_mm) if self.spacing_mm else None
        key = {
            "resample_spacing": spacing,  # the key's old name: prepared trees keep their key
            "compresslevel": self.compresslevel,
            "mask_compresslevel": MASK_COMPRESSLEVEL,
            "store": store_layout.as_key(),
        }
        if self.orientation:  # only when set: trees prepared before keep their key
            key["orientation"] = self.orientation
        return key


@dataclass
class CaseOutcome:
    """A case's record (see records.py) and whether it was skipped as unchanged."""

    case_id: str
    record: dict[str, Any]
    skipped: bool
    #: Digests of the case's raw inputs (absolute path -> size, mtime ns, SHA-256).
    digests: dict[str, Digest] = field(default_factory=dict)


@dataclass
class _Written:
    """Outputs written so far (relative path -> size), removed again if the case is rejected."""

    out_root: Path
    files: dict[str, int] = field(default_factory=dict)

    def put(self, rel: str, data: bytes) -> None:
        self.files[rel] = atomic_write_bytes(safe_join(self.out_root, rel), data, durable=False)

    def discard(self) -> None:
        for rel in self.files:
            (self.out_root / rel).unlink(missing_ok=True)
        self.files.clear()


def input_digests(spec: CaseSpec, known: Mapping[str, Digest] | None = None) -> dict[str, Digest]:
    """Digests of the case's raw inputs; a file whose size and mtime match ``known`` is not
    read (a no-op rerun reads no raw bytes)."""
    known = known or {}
    return {str(p): known_digest(p, known.get(str(p))) for p in spec.inputs if p.is_file()}


def case_key(
    spec: CaseSpec, params: PrepareParams, digests: Mapping[str, Digest] | None = None
) -> dict[str, Any]:
    """Everything the case's output depends on (size and SHA-256 of every raw input, from
    ``digests`` when given, else read)."""
    digests = digests if digests is not None else input_digests(spec)
    return {
        "format": FORMAT_VERSION,
        "params": params.as_key(),
        "split": spec.split,
        "modality": spec.modality,
        "images": [[s.channel, spec.relative(s.path), s.index] for s in spec.images],
        "label_map": spec.relative(spec.label_map) if spec.label_map else None,
        "classes": [[c.name, c.raw_name, list(c.values)] for c in spec.classes],
        "known_values": list(spec.known_values),
        "class_files": [[c.name, spec.relative(p)] for c, p in spec.class_files],
        "inputs": [
            [spec.relative(p), digests[str(p)][0], digests[str(p)][2]]
            for p in spec.inputs
            if str(p) in digests
        ],
        # only when set, so that records of datasets without it keep their keys
        **({"allow_label_resampling": True} if spec.allow_label_resampling else {}),
    }


def run_case(
    spec: CaseSpec,
    out_root: Path,
    params: PrepareParams,
    known: Mapping[str, Digest] | None = None,
) -> CaseOutcome:
    """Prepare ``spec`` under ``out_root`` unless its record shows it is up to date.

    ``known``: digests of earlier runs (see :func:`input_digests`). Input problems become
    quarantine rows; an :class:`~neurosam3d.io.atomic.OutputError` (disk full, read-only or
    unwritable output) is raised, with this case's partial outputs removed.
    """
    path = record_path(out_root, spec.dataset, spec.case_id)
    try:
        digests = input_digests(spec, known)
    except OSError as exc:  # a raw input that cannot be read (permissions, I/O error)
        where = spec.relative(Path(exc.filename)) if exc.filename else spec.case_id
        problem = f"cannot be read: {exc.strerror or exc}"
        return _unrecorded(
            spec,
            None,
            Problem(spec.dataset, spec.case_id, None, where, problem, Kind.UNREADABLE_FILE),
        )
    key = case_key(spec, params, digests)
    old = read_record(path)
    if old is not None and old.get("key") == key and outputs_intact(out_root, old):
        return CaseOutcome(spec.case_id, old, skipped=True, digests=digests)
    written = _Written(out_root)
    problems: list[Problem] = []
    rows: list[dict[str, Any]] = []
    absent: list[dict[str, Any]] = []
    store: list[dict[str, Any]] = []
    try:
        rows, absent, store_row = _build(spec, params, written, problems)
        store = [store_row]
    except CaseRejected as exc:
        written.discard()
        rows, absent = [], []
        problems.append(Problem(spec.dataset, spec.case_id, None, exc.path, exc.problem, exc.kind))
    except OutputError:
        written.discard()
        raise
    except Exception as exc:  # unforeseen input or a bug: report it, go on with the other cases
        written.discard()
        log.exception("%s/%s: unexpected error", spec.dataset, spec.case_id)
        problem = Problem(
            spec.dataset,
            spec.case_id,
            None,
            spec.relative(spec.images[0].path),
            f"unexpected {type(exc).__name__}: {exc}",
            Kind.PROCESSING_ERROR,
        )
        return _unrecorded(spec, key, problem, digests)
    record = {
        "key": key,
        "outputs": dict(sorted(written.files.items())),
        "rows": rows,
        "absent": absent,
        "store": store,
        "problems": [p.as_row() for p in sorted(problems, key=Problem.sort_key)],
    }
    for rel in sorted(set(old.get("outputs", {}) if old else {}) - set(written.files)):
        remove_output(out_root / rel)
    write_record(path, record)
    return CaseOutcome(spec.case_id, record, skipped=False, digests=digests)


def _unrecorded(
    spec: CaseSpec,
    key: dict[str, Any] | None,
    problem: Problem,
    digests: dict[str, Digest] | None = None,
) -> CaseOutcome:
    """An outcome with one quarantine row and no record written, so the next run retries."""
    record = {
        "key": key,
        "outputs": {},
        "rows": [],
        "absent": [],
        "store": [],
        "problems": [problem.as_row()],
    }
    return CaseOutcome(spec.case_id, record, skipped=False, digests=digests or {})


def worker_died(spec: CaseSpec, exc: BaseException) -> CaseOutcome:
    """The outcome of a case whose worker process died (killed, e.g. out of memory)."""
    problem = (
        f"the worker process preparing this case died ({type(exc).__name__}: {exc}); most often "
        "it ran out of memory: check the image sizes or lower --workers"
    )
    where = spec.relative(spec.images[0].path)
    return _unrecorded(
        spec, None, Problem(spec.dataset, spec.case_id, None, where, problem, Kind.WORKER_DIED)
    )


def remove_output(path: Path) -> None:
    """Delete an output file, and its folder if that is now empty (a class no longer present)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def _image_folder(split: str, channel: str, multi: bool) -> str:
    return f"images{split}_{sanitise_class_name(channel)}" if multi else f"images{split}"


def _load_channels(spec: CaseSpec) -> tuple[list[np.ndarray], nib.Nifti1Image]:
    """Validated channel arrays (I, J, K) in native dtype, and the primary channel's image."""
    loaded: dict[Path, tuple[nib.Nifti1Image, np.ndarray]] = {}
    arrays: list[np.ndarray] = []
    primary: nib.Nifti1Image | None = None
    for source in spec.images:
        rel = spec.relative(source.path)
        if source.path not in loaded:
            image = read_nifti(source.path, spec.relative)
            loaded[source.path] = (image, native_array(np.asanyarray(image.dataobj), image))
        image, data = loaded[source.path]
        if source.index is not None:
            if data.ndim != 4 or data.shape[3] <= source.index:
                raise CaseRejected(
                    Kind.BAD_IMAGE,
                    rel,
                    f"image shape {data.shape} has no channel {source.index} ({source.channel}); "
                    f"dataset.json declares {len(spec.images)} channels on the last axis",
                )
            data = data[..., source.index]
        data = squeeze_to_3d(data, rel, Kind.BAD_IMAGE, "image")
        check_finite(data, rel)
        if primary is None:
            primary = image
        elif not grid.same_grid(data.shape, image.affine, arrays[0].shape, primary.affine):
            raise CaseRejected(
                Kind.GRID_MISMATCH,
                rel,
                f"channel {source.channel} is not on the primary channel's grid",
            )
        arrays.append(data)
    assert primary is not None
    return arrays, primary


def _build(
    spec: CaseSpec, params: PrepareParams, written: _Written, problems: list[Problem]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Write the case's image, masks and training-store entry; return its manifest rows,
    absent classes and store table row."""
    channels, primary = _load_channels(spec)
    target = Grid(channels[0].shape, primary.affine, primary)
    if params.spacing_mm or params.orientation:
        # The package's one grid convention (neurosam3d.transforms.geometry): what evaluation,
        # predict and the registered model plan for a model recording this preprocessing.
        working = plan_grid(target.affine, target.shape, params.orientation, params.spacing_mm)
        if working.resamples:
            channels = [
                resample_linear(c, target.affine, working.shape, working.affine) for c in channels
            ]
        else:  # a reorientation only: an exact copy of the voxels
            channels = [reoriented(c, working) for c in channels]
        target = Grid(working.shape, working.affine, primary)
    if spec.label_map is not None:
        labels = load_label_map(spec, spec.label_map, target)
        masks = class_masks(labels, classes_in_label_map(spec, labels, problems))
        source_label = spec.relative(spec.label_map)
    else:
        masks = class_file_masks(spec, target, problems)
        source_label = None
    image_paths = _write_channels(spec, channels, target, written, params)
    encoder = MaskEncoder(target.shape, target.affine, target.like)
    store = EntryBuilder(spec.dataset, spec.split, spec.case_id, tuple(target.shape))
    rows = []
    for cls, box, mask, count in masks:
        rel = f"{spec.dataset}/labels{spec.split}/{cls.name}/{spec.case_id}.nii.gz"
        data = encoder.encode(mask)
        written.put(rel, data)
        digest = sha256_hex(data)
        store.add(cls.name, box, mask, digest)
        rows.append(_row(spec, cls, count, box, target, image_paths, rel, digest, source_label))
    if not rows:
        raise CaseRejected(
            Kind.EMPTY_LABEL,
            source_label or spec.relative(spec.images[0].path),
            "no voxel of any known class in this case",
        )
    present = {r["class_name"] for r in rows}
    declared = spec.classes if spec.label_map is not None else [c for c, _ in spec.class_files]
    absent = [
        {
            "dataset": spec.dataset,
            "split": spec.split,
            "case_id": spec.case_id,
            "class_name": c.name,
            "label_value": c.label_value,
        }
        for c in sorted(declared)
        if c.name not in present
    ]
    files, store_row = store.encode(
        channels[0], spec.modality, image_paths[0], written.files[image_paths[0]]
    )
    for rel, data in files.items():
        written.put(rel, data)
    return rows, absent, store_row


def _write_channels(
    spec: CaseSpec,
    channels: list[np.ndarray],
    target: Grid,
    written: _Written,
    params: PrepareParams,
) -> list[str]:
    multi = len(channels) > 1
    paths = []
    for source, data in zip(spec.images, channels, strict=True):
        rel = f"{spec.dataset}/{_image_folder(spec.split, source.channel, multi)}/{spec.case_id}.nii.gz"
        image = make_image(data, target.affine, like=target.like)
        written.put(rel, nifti_bytes(image, compresslevel=params.compresslevel))
        paths.append(rel)
    return paths


def _row(
    spec: CaseSpec,
    cls: ClassSpec,
    count: int,
    box: tuple[slice, ...],
    target: Grid,
    image_paths: list[str],
    mask_path: str,
    digest: str,
    source_label: str | None,
) -> dict[str, Any]:
    spacing = target.spacing
    return {
        "dataset": spec.dataset,
        "split": spec.split,
        "case_id": spec.case_id,
        "class_name": cls.name,
        "label_value": cls.label_value,
        "modality": spec.modality,
        "channels": [s.channel for s in spec.images],
        "image_path": image_paths[0],
        "image_paths": image_paths,
        "mask_path": mask_path,
        "voxel_count": count,
        "volume_mm3": float(count * spacing[0] * spacing[1] * spacing[2]),
        "bbox_min": [int(s.start) for s in box],
        "bbox_max": [int(s.stop) for s in box],
        "spacing": list(spacing),
        "shape": list(target.shape),
        "mask_sha256": digest,
        "source_image": spec.relative(spec.images[0].path),
        "source_label": source_label or spec.relative(dict(spec.class_files)[cls]),
    }

"""What a layout finds: cases (image channels + label sources) and dataset-level problems.

Layouts only list files; nothing here opens an image. Cases are paired by case id, never by
listing order. :func:`finalise_cases` applies the checks that hold for every layout: case ids
must be safe file names and unique within a dataset, and the split rules are applied.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from neurosam3d.data.config import DatasetConfig
from neurosam3d.data.labels import ClassSpec
from neurosam3d.data.problems import Kind, Problem
from neurosam3d.io.paths import is_safe_name


@dataclass(frozen=True)
class ImageSource:
    """One image channel: ``path`` (absolute); ``index`` selects a volume of a 4D file (last axis)."""

    channel: str
    path: Path
    index: int | None = None


@dataclass(frozen=True)
class CaseSpec:
    """One case to prepare.

    Exactly one of ``label_map`` (a multi-class label file; ``classes`` give name -> values and
    ``known_values`` the values that are not classes but also not unknown, e.g. nnU-Net's
    ``ignore`` or a rejected class name) and ``class_files`` (one binary file per class) is used.
    """

    dataset: str
    split: str
    case_id: str
    modality: str
    raw_root: Path
    images: tuple[ImageSource, ...]
    label_map: Path | None = None
    classes: tuple[ClassSpec, ...] = ()
    known_values: tuple[int, ...] = ()
    class_files: tuple[tuple[ClassSpec, Path], ...] = ()
    #: resample label grids rotated or sheared against the image (dataset config key)
    allow_label_resampling: bool = False

    def relative(self, path: Path) -> str:
        """``path`` relative to the raw root, POSIX (quarantine and manifest source columns)."""
        try:
            return path.relative_to(self.raw_root).as_posix()
        except ValueError:
            return path.as_posix()

    @property
    def inputs(self) -> list[Path]:
        """Every raw file the case reads, sorted, without repeats."""
        files = {s.path for s in self.images}
        files.update(p for _, p in self.class_files)
        if self.label_map is not None:
            files.add(self.label_map)
        return sorted(files)


@dataclass
class Discovery:
    """A layout's findings: cases, dataset-level problems, and a licence read from the dataset."""

    cases: list[CaseSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    licence: str | None = None


def in_validation(case_id: str, fraction: float, seed: int) -> bool:
    """Whether a Tr case moves to Val: a stable hash of ``seed:case_id`` below ``fraction``.

    Adding or removing other cases never moves this one.
    """
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def outside_root(case: CaseSpec) -> Path | None:
    """The first input of ``case`` that resolves (through symlinks) outside its raw root."""
    root = case.raw_root.resolve()
    return next((p for p in case.inputs if not p.resolve().is_relative_to(root)), None)


def finalise_cases(config: DatasetConfig, found: Discovery) -> Discovery:
    """Reject unsafe and duplicate case ids and (unless the config allows them) inputs whose
    symlinks lead outside the raw root, apply ``val_fraction``; sort cases by (split, id)."""
    counts = Counter(case.case_id for case in found.cases)
    problems = list(found.problems)
    cases = []
    for case in found.cases:
        source = case.relative(case.images[0].path)
        escaped = None if config.allow_outside_root else outside_root(case)
        if escaped is not None:
            problems.append(
                Problem(
                    config.name,
                    case.case_id,
                    None,
                    case.relative(escaped),
                    f"resolves to {escaped.resolve()}, outside the dataset root "
                    f"{case.raw_root}; set allow_outside_root: true in the dataset config "
                    "to accept such links",
                    Kind.OUTSIDE_ROOT,
                )
            )
        elif not is_safe_name(case.case_id):
            problems.append(
                Problem(
                    config.name,
                    case.case_id,
                    None,
                    source,
                    f"case id {case.case_id!r} is not a safe file name (letters, digits, . _ -)",
                    Kind.BAD_CASE_ID,
                )
            )
        elif counts[case.case_id] > 1:
            problems.append(
                Problem(
                    config.name,
                    case.case_id,
                    None,
                    source,
                    f"case id {case.case_id!r} occurs {counts[case.case_id]} times "
                    f"(split {case.split}); all its entries are rejected, rename or remove one",
                    Kind.DUPLICATE_CASE,
                )
            )
        else:
            if case.split == "Tr" and in_validation(
                case.case_id, config.val_fraction, config.split_seed
            ):
                case = replace(case, split="Val")
            if config.allow_label_resampling:
                case = replace(case, allow_label_resampling=True)
            cases.append(case)
    cases.sort(key=lambda c: (c.split, c.case_id))
    return Discovery(cases, sorted(set(problems), key=Problem.sort_key), found.licence)

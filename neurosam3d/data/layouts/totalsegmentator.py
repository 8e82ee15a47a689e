"""TotalSegmentator layout: ``<subject>/ct.nii.gz`` + ``<subject>/segmentations/<class>.nii.gz``.

One binary file per class (v2 ships all 117, most of them empty in any one subject). Splits come
from ``meta.csv`` (``;``-separated, columns ``image_id`` and ``split`` with train/val/test); without
a ``meta.csv`` every subject folder holding ``ct.nii.gz`` is Tr. A config's ``classes`` is the
allowed set of class file names; other files are quarantined (``unknown_class_file``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from neurosam3d.data.cases import CaseSpec, Discovery, ImageSource
from neurosam3d.data.config import ConfigError, DatasetConfig
from neurosam3d.data.labels import build_classes
from neurosam3d.data.problems import Kind, Problem

SPLIT_NAMES = {"train": "Tr", "val": "Val", "test": "Ts"}
IMAGE = "ct.nii.gz"
ENDING = ".nii.gz"


def _subjects(root: Path) -> list[tuple[str, str]]:
    meta = root / "meta.csv"
    if not meta.is_file():
        return [(p.parent.name, "Tr") for p in sorted(root.glob(f"*/{IMAGE}"))]
    with open(meta, newline="") as fh:
        dialect = csv.Sniffer().sniff(fh.read(4096), delimiters=";,")
        fh.seek(0)
        rows = list(csv.DictReader(fh, dialect=dialect))
    if not rows or not {"image_id", "split"} <= set(rows[0]):
        raise ConfigError(f"{meta}: needs columns image_id and split")
    subjects = []
    for row in rows:
        split = SPLIT_NAMES.get(row["split"].strip().lower())
        if split is None:
            raise ConfigError(f"{meta}: split {row['split']!r} is not one of {list(SPLIT_NAMES)}")
        subjects.append((row["image_id"].strip(), split))
    return subjects


def discover_totalsegmentator(config: DatasetConfig, root: Path) -> Discovery:
    """Subjects listed in meta.csv (or found), with their per-class segmentation files."""
    allowed = set(config.classes) if config.classes else None
    found = Discovery()
    for subject, split in _subjects(root):
        image = root / subject / IMAGE
        seg_dir = root / subject / "segmentations"
        if not image.is_file() or not seg_dir.is_dir():
            rel = f"{subject}/{IMAGE}" if not image.is_file() else f"{subject}/segmentations"
            found.problems.append(
                Problem(config.name, subject, None, rel, "does not exist", Kind.MISSING_FILE)
            )
            continue
        files = {p.name[: -len(ENDING)]: p for p in sorted(seg_dir.glob(f"*{ENDING}"))}
        for raw in sorted(n for n in files if allowed is not None and n not in allowed):
            found.problems.append(
                Problem(
                    config.name,
                    subject,
                    raw,
                    files.pop(raw).relative_to(root).as_posix(),
                    "class file not in the dataset config's 'classes'",
                    Kind.UNKNOWN_CLASS_FILE,
                )
            )
        classes, rejected = build_classes((raw, ()) for raw in files)
        for problem in rejected:
            found.problems.append(
                Problem(
                    config.name,
                    subject,
                    problem.raw_name,
                    files[problem.raw_name].relative_to(root).as_posix(),
                    problem.problem,
                    problem.kind,
                )
            )
        found.cases.append(
            CaseSpec(
                dataset=config.name,
                split=split,
                case_id=subject,
                modality=config.case_modality(subject, ["CT"]),
                raw_root=root,
                images=(ImageSource("CT", image),),
                class_files=tuple((spec, files[spec.raw_name]) for spec in classes),
            )
        )
    return found

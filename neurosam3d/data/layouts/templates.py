"""Template layouts: file paths per split written as templates with a ``{case}`` field.

``per_case`` (KiTS23 default ``{case}/imaging.nii.gz`` + ``{case}/segmentation.nii.gz``; BraTS
``{case}/{case}_flair.nii.gz`` ...) and ``paired`` (AMOS default ``imagesTr/{case}.nii.gz`` +
``labelsTr/{case}.nii.gz``, likewise ``Va``/``Ts``) differ only in their default templates.
nnU-Net reuses :func:`discover_templates` with templates built from its ``dataset.json``.
Cases are found by globbing the first channel's template (and the label template, to report
labels without an image); every other file is derived from the case id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from neurosam3d.data.cases import CaseSpec, Discovery, ImageSource
from neurosam3d.data.config import ConfigError, DatasetConfig, SplitFiles
from neurosam3d.data.labels import ClassSpec, build_classes
from neurosam3d.data.problems import Kind, Problem

PER_CASE_DEFAULT = {
    "Tr": SplitFiles({"image": "{case}/imaging.nii.gz"}, "{case}/segmentation.nii.gz"),
}
PAIRED_DEFAULT = {
    split: SplitFiles(
        {"image": f"images{folder}/{{case}}.nii.gz"}, f"labels{folder}/{{case}}.nii.gz"
    )
    for split, folder in (("Tr", "Tr"), ("Val", "Va"), ("Ts", "Ts"))
}


def template_regex(template: str) -> re.Pattern[str]:
    """Regex matching a relative POSIX path against ``template``; group ``case`` is the id.

    A second ``{case}`` must repeat the first (``{case}/{case}_t1.nii.gz``).
    """
    head, sep, tail = template.partition("{case}")
    if not sep:
        raise ConfigError(f"template {template!r} has no '{{case}}'")
    rest = re.escape(tail).replace(re.escape("{case}"), "(?P=case)")
    return re.compile(re.escape(head) + r"(?P<case>[^/]+?)" + rest)


def _find_case_ids(root: Path, template: str) -> set[str]:
    pattern = template_regex(template)
    ids = set()
    for path in root.glob(template.replace("{case}", "*")):
        match = pattern.fullmatch(path.relative_to(root).as_posix())
        if match and path.is_file():
            ids.add(match["case"])
    return ids


def classes_from_label_map(
    dataset: str, source: str, label_map: Mapping[str, Iterable[int]]
) -> tuple[tuple[ClassSpec, ...], tuple[int, ...], list[Problem]]:
    """Classes of a raw ``name -> values`` map, values of rejected names, and their problems.

    ``source`` names the file the map came from (config or dataset.json), for the quarantine.
    """
    classes, rejected = build_classes((name, tuple(v)) for name, v in label_map.items())
    rejected_names = {p.raw_name for p in rejected}
    known = tuple(
        sorted({v for name, vals in label_map.items() if name in rejected_names for v in vals})
    )
    problems = [Problem(dataset, None, p.raw_name, source, p.problem, p.kind) for p in rejected]
    return classes, known, problems


def discover_templates(
    config: DatasetConfig,
    root: Path,
    splits: Mapping[str, SplitFiles],
    label_map: Mapping[str, Iterable[int]],
    label_map_source: str,
) -> Discovery:
    """Cases of every split whose first channel's template matches files under ``root``."""
    classes, known, problems = classes_from_label_map(config.name, label_map_source, label_map)
    found = Discovery(problems=problems)
    for split, files in splits.items():
        channels = list(files.images)
        image_ids = _find_case_ids(root, files.images[channels[0]])
        label_ids = _find_case_ids(root, files.label)
        for case_id in sorted(label_ids - image_ids):
            found.problems.append(
                Problem(
                    config.name,
                    case_id,
                    None,
                    files.label.format(case=case_id),
                    f"label has no image {files.images[channels[0]].format(case=case_id)}",
                    Kind.MISSING_FILE,
                )
            )
        for case_id in sorted(image_ids):
            paths = {ch: root / files.images[ch].format(case=case_id) for ch in channels}
            label = root / files.label.format(case=case_id)
            missing = [p for p in [*paths.values(), label] if not p.is_file()]
            if missing:
                found.problems.append(
                    Problem(
                        config.name,
                        case_id,
                        None,
                        missing[0].relative_to(root).as_posix(),
                        "file does not exist (case skipped): "
                        + ", ".join(p.relative_to(root).as_posix() for p in missing),
                        Kind.MISSING_FILE,
                    )
                )
                continue
            found.cases.append(
                CaseSpec(
                    dataset=config.name,
                    split=split,
                    case_id=case_id,
                    modality=config.case_modality(case_id, channels),
                    raw_root=root,
                    images=tuple(ImageSource(ch, paths[ch]) for ch in channels),
                    label_map=label,
                    classes=classes,
                    known_values=known,
                )
            )
    return found


def _config_label_map(config: DatasetConfig) -> dict[str, list[int]]:
    if not config.labels:
        raise ConfigError(f"dataset {config.name!r} (layout {config.layout}) needs 'labels'")
    return {name: [value] for value, name in sorted(config.labels.items())}


def _config_source(config: DatasetConfig) -> str:
    return config.source.name if config.source else "dataset config"


def discover_per_case(config: DatasetConfig, root: Path) -> Discovery:
    """One folder per case (default: KiTS23 names)."""
    splits = config.splits or PER_CASE_DEFAULT
    return discover_templates(
        config, root, splits, _config_label_map(config), _config_source(config)
    )


def discover_paired(config: DatasetConfig, root: Path) -> Discovery:
    """Image and label folders per split (default: AMOS ``imagesTr``/``labelsTr``/``imagesVa``...)."""
    splits = config.splits or PAIRED_DEFAULT
    return discover_templates(
        config, root, splits, _config_label_map(config), _config_source(config)
    )

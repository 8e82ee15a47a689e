"""Medical Segmentation Decathlon layout: ``TaskXX_Name/`` with dataset.json and 4D images.

dataset.json gives ``modality`` (channel index -> name), ``labels`` (value -> name, "0" is
background) and the ``training`` list of ``{"image", "label"}`` paths relative to the task
folder. Multi-channel tasks (Task01 BrainTumour, Task05 Prostate) store all channels in one 4D
image; channel ``i`` is volume ``i`` along the last axis. Listed files that do not exist are
quarantined (``missing_file``); files not listed (e.g. macOS ``._*`` copies) are ignored.
The ``test`` list has no labels and is not prepared.
"""

from __future__ import annotations

from pathlib import Path

from neurosam3d.data.cases import CaseSpec, Discovery, ImageSource
from neurosam3d.data.config import ConfigError, DatasetConfig
from neurosam3d.data.layouts.dataset_json import (
    dataset_licence,
    indexed_names,
    numbered_names,
    read_dataset_json,
)
from neurosam3d.data.layouts.templates import classes_from_label_map
from neurosam3d.data.problems import Kind, Problem


def _case_id(image: str) -> str:
    name = Path(image).name
    for ending in (".nii.gz", ".nii"):
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def discover_msd(config: DatasetConfig, root: Path) -> Discovery:
    """Cases of the ``training`` list of an MSD task folder."""
    doc = read_dataset_json(root, ("labels", "modality", "training"))
    doc_path = root / "dataset.json"
    channels = indexed_names(doc, "modality", doc_path)
    if config.labels:
        label_values = dict(config.labels)
        source = config.source.name if config.source else "dataset config"
    else:
        label_values = numbered_names(doc, "labels", doc_path)
        label_values.pop(0, None)  # background
        source = "dataset.json"
    label_map = {name: [value] for value, name in sorted(label_values.items())}
    classes, known, problems = classes_from_label_map(config.name, source, label_map)
    found = Discovery(problems=problems, licence=dataset_licence(doc))
    entries = doc["training"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{doc_path}: 'training' must be a list of {{image, label}} objects")
    for entry in entries:
        image_rel = str(entry.get("image", "")).removeprefix("./")
        label_rel = str(entry.get("label", "")).removeprefix("./")
        case_id = _case_id(image_rel)
        missing = [rel for rel in (image_rel, label_rel) if not rel or not (root / rel).is_file()]
        if missing:
            found.problems.append(
                Problem(
                    config.name,
                    case_id,
                    None,
                    missing[0],
                    f"listed in dataset.json but does not exist: {', '.join(missing)}",
                    Kind.MISSING_FILE,
                )
            )
            continue
        indices = range(len(channels)) if len(channels) > 1 else [None]
        found.cases.append(
            CaseSpec(
                dataset=config.name,
                split="Tr",
                case_id=case_id,
                modality=config.case_modality(case_id, channels),
                raw_root=root,
                images=tuple(
                    ImageSource(ch, root / image_rel, i)
                    for ch, i in zip(channels, indices, strict=True)
                ),
                label_map=root / label_rel,
                classes=classes,
                known_values=known,
            )
        )
    return found

"""nnU-Net v2 raw layout: ``DatasetXXX_Name/{imagesTr,labelsTr,imagesTs,labelsTs}`` + dataset.json.

Images are ``<case>_<XXXX><file_ending>`` (one file per channel, ``XXXX`` = channel index),
labels ``<case><file_ending>``. ``labels`` maps class name -> value (or a list of values for
region-based training); ``background`` is not a class, ``ignore`` is a known non-class value.
``imagesTs`` becomes split Ts only when ``labelsTs`` exists (nnU-Net test sets ship unlabelled).
A config's ``labels`` replaces dataset.json's (for renaming classes).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from neurosam3d.data.cases import Discovery
from neurosam3d.data.config import DatasetConfig, SplitFiles
from neurosam3d.data.layouts.dataset_json import (
    check_label_value,
    check_unique_values,
    dataset_licence,
    indexed_names,
    mapping,
    read_dataset_json,
)
from neurosam3d.data.layouts.templates import discover_templates

NOT_CLASSES = ("background", "ignore")


def _label_map(doc: dict, path: Path) -> dict[str, list[int]]:
    """Class name -> label values. A list is an nnU-Net region (values may recur across
    regions); two plain values for one number are refused (they would give identical masks)."""
    label_map: dict[str, list[int]] = {}
    plain: dict[str, int] = {}
    for name, value in mapping(doc, "labels", path).items():
        values = value if isinstance(value, list) else [value]
        checked = [check_label_value(v, name, path) for v in values]
        if not isinstance(value, list):
            plain[name] = checked[0]
        if name.lower() not in NOT_CLASSES:
            label_map[name] = [v for v in checked if v != 0]
    check_unique_values(plain, path)
    return label_map


def discover_nnunet(config: DatasetConfig, root: Path) -> Discovery:
    """Cases of an nnU-Net v2 raw dataset folder."""
    doc = read_dataset_json(root, ("labels", "channel_names"))
    doc_path = root / "dataset.json"
    ending = doc.get("file_ending", ".nii.gz")
    channels = indexed_names(doc, "channel_names", doc_path)
    splits = {}
    for split, folder in (("Tr", "Tr"), ("Ts", "Ts")):
        if (root / f"images{folder}").is_dir() and (root / f"labels{folder}").is_dir():
            images = {
                name: f"images{folder}/{{case}}_{index:04d}{ending}"
                for index, name in enumerate(channels)
            }
            splits[split] = SplitFiles(images, f"labels{folder}/{{case}}{ending}")
    if config.labels:
        label_map = {name: [value] for value, name in sorted(config.labels.items())}
        source = config.source.name if config.source else "dataset config"
    else:
        label_map, source = _label_map(doc, doc_path), "dataset.json"
    ignore = {int(v) for k, v in doc["labels"].items() if k.lower() == "ignore"}
    found = discover_templates(config, root, splits, label_map, source)
    found.cases = [
        replace(case, known_values=tuple(sorted({*case.known_values, *ignore})))
        for case in found.cases
    ]
    found.licence = dataset_licence(doc)
    return found

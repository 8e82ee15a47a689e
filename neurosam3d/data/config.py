"""Dataset configurations: one YAML entry per dataset, no code per dataset.

A config names the dataset, its layout kind (``nnunet``, ``msd``, ``totalsegmentator``,
``per_case``, ``paired``; see :mod:`neurosam3d.data.layouts`), its raw ``root``, licence,
modality, label map and split rules. ``configs/datasets/<name>.yaml`` holds the shipped ones.

Root resolution: an absolute ``root`` is used as is. A relative ``root`` is resolved against the
raw root passed in (``--raw-root``); without one, against the first of ``./data`` (the
DVC-tracked raw folder, relative to the current directory) and the repository's ``samples/``
folder that contains it.

YAML keys (all but ``name``, ``layout`` and ``root`` optional)::

    name: AMOS22                  # dataset name: folder under the output root, manifest column;
                                  # letters, digits, . _ - (starting with a letter or digit)
    layout: paired                # a registered layout kind
    root: AMOS22                  # raw dataset folder
    licence: CC-BY-4.0
    modality: CT                  # CT or MR of the primary channel (default: from channel name)
    modality_overrides: {"amos_05*": MR}     # case-id glob -> modality, first match wins
    labels: {1: spleen, 2: kidney_right}    # raw value -> class name (nnunet/msd: dataset.json)
    classes: [spleen, liver]      # totalsegmentator: allowed per-class file names
    splits:                       # per_case/paired: file templates per split; {case} = case id
      Tr: {images: {CT: "imagesTr/{case}.nii.gz"}, label: "labelsTr/{case}.nii.gz"}
    val_fraction: 0.0             # move this fraction of Tr cases to Val (stable hash of case id)
    split_seed: 0
    allow_outside_root: false     # accept raw files whose symlinks lead outside root
    allow_label_resampling: false # resample labels rotated/sheared against their image
    url: ...                      # documentation only: url, citation, notes
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from neurosam3d.data.schema import SPLITS
from neurosam3d.io.paths import is_safe_name

REPO = Path(__file__).resolve().parents[2]
#: Where ``--dataset NAME`` looks for ``NAME.yaml``.
CONFIG_DIR = REPO / "configs" / "datasets"
#: The shipped raw sample datasets (samples/README.md).
SAMPLES_DIR = REPO / "samples"
MODALITIES = ("CT", "MR")

_DOC_KEYS = {"url", "citation", "notes", "description"}


class ConfigError(ValueError):
    """A dataset config (or a dataset.json it relies on) that cannot be used; says where and why."""


@dataclass(frozen=True)
class SplitFiles:
    """File templates of one split: channel name -> image template, and the label template."""

    images: dict[str, str]
    label: str


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset (see the module docstring for the YAML keys)."""

    name: str
    layout: str
    root: Path
    licence: str = "unknown"
    modality: str | None = None
    modality_overrides: dict[str, str] = field(default_factory=dict)
    labels: dict[int, str] | None = None
    classes: tuple[str, ...] | None = None
    splits: dict[str, SplitFiles] | None = None
    val_fraction: float = 0.0
    split_seed: int = 0
    allow_outside_root: bool = False
    allow_label_resampling: bool = False
    source: Path | None = None  # the YAML file, for messages

    def case_modality(self, case_id: str, channel_names: list[str]) -> str:
        """CT or MR for ``case_id``: override glob, else ``modality``, else from the channel name."""
        for pattern, modality in self.modality_overrides.items():
            if fnmatch.fnmatchcase(case_id, pattern):
                return modality
        if self.modality:
            return self.modality
        return "CT" if channel_names and channel_names[0].upper() == "CT" else "MR"

    def resolve_root(self, raw_root: str | os.PathLike[str] | None = None) -> Path:
        """The raw dataset folder (module docstring: root resolution); raises :class:`ConfigError`."""
        if self.root.is_absolute():
            candidates = [self.root]
        elif raw_root is not None:
            candidates = [Path(raw_root) / self.root]
        else:
            candidates = [Path.cwd() / "data" / self.root, SAMPLES_DIR / self.root]
        for candidate in candidates:
            if candidate.is_dir():
                return candidate.resolve()
        raise ConfigError(
            f"dataset {self.name!r}: raw folder not found (looked in "
            + ", ".join(str(c) for c in candidates)
            + "); download the dataset there or pass --raw-root"
        )


def _fail(where: object, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _parse_splits(raw: Any, where: object) -> dict[str, SplitFiles]:
    if not isinstance(raw, dict):
        raise _fail(where, "'splits' must map Tr/Val/Ts to {images: {...}, label: ...}")
    splits = {}
    for split, entry in raw.items():
        if split not in SPLITS:
            raise _fail(where, f"unknown split {split!r}; use one of {list(SPLITS)}")
        images = entry.get("images") if isinstance(entry, dict) else None
        if not isinstance(images, dict) or not images or not entry.get("label"):
            raise _fail(where, f"split {split} needs 'images' (channel -> template) and 'label'")
        templates = [*images.values(), entry["label"]]
        if not all("{case}" in str(t) for t in templates):
            raise _fail(where, f"split {split}: every template must contain '{{case}}'")
        splits[split] = SplitFiles({str(k): str(v) for k, v in images.items()}, str(entry["label"]))
    return splits


#: The layouts a config may name; :data:`neurosam3d.data.layouts.LAYOUTS` maps each to its
#: discovery function (and checks it covers exactly these). Kept here so that the config does
#: not import the layouts, which import the config.
LAYOUT_NAMES = ("nnunet", "msd", "totalsegmentator", "per_case", "paired")


def config_from_dict(
    doc: dict[str, Any], *, source: Path | None = None, where: object = None
) -> DatasetConfig:
    """Validate a parsed YAML mapping into a :class:`DatasetConfig`.

    ``where`` names the origin in error messages (default: ``source``, else the name).
    """
    where = where or source or doc.get("name", "<config>")
    known = {f for f in DatasetConfig.__dataclass_fields__ if f != "source"} | _DOC_KEYS
    unknown = sorted(set(doc) - known)
    if unknown:
        raise _fail(where, f"unknown keys {unknown}; allowed: {sorted(known)}")
    for key in ("name", "layout", "root"):
        if not doc.get(key):
            raise _fail(where, f"missing required key {key!r}")
    if not is_safe_name(str(doc["name"])):
        raise _fail(
            where,
            f"dataset name {str(doc['name'])!r} is not a safe folder name: use letters, digits, "
            "'.', '_' and '-', starting with a letter or digit (no '/', no '..')",
        )
    if doc["layout"] not in LAYOUT_NAMES:
        raise _fail(where, f"unknown layout {doc['layout']!r}; registered: {sorted(LAYOUT_NAMES)}")
    modalities = [doc.get("modality"), *dict(doc.get("modality_overrides") or {}).values()]
    bad = [m for m in modalities if m is not None and m not in MODALITIES]
    if bad:
        raise _fail(where, f"modality must be one of {list(MODALITIES)}, got {bad}")
    fraction = float(doc.get("val_fraction", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise _fail(where, f"val_fraction must be in [0, 1), got {fraction}")
    labels = doc.get("labels")
    if labels is not None:
        try:
            labels = {int(k): str(v) for k, v in labels.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise _fail(where, "'labels' must map integer values to class names") from exc
        if any(not 0 < v <= 2**31 - 1 for v in labels):
            raise _fail(
                where, "'labels' values must be positive and at most 2147483647 (0 is background)"
            )
    return DatasetConfig(
        name=str(doc["name"]),
        layout=str(doc["layout"]),
        root=Path(str(doc["root"])),
        licence=str(doc.get("licence", "unknown")),
        modality=doc.get("modality"),
        modality_overrides={
            str(k): str(v) for k, v in (doc.get("modality_overrides") or {}).items()
        },
        labels=labels,
        allow_outside_root=bool(doc.get("allow_outside_root", False)),
        allow_label_resampling=bool(doc.get("allow_label_resampling", False)),
        classes=tuple(str(c) for c in doc["classes"]) if doc.get("classes") else None,
        splits=_parse_splits(doc["splits"], where) if doc.get("splits") else None,
        val_fraction=fraction,
        split_seed=int(doc.get("split_seed", 0)),
        source=source,
    )


def load_dataset_config(name_or_path: str | os.PathLike[str]) -> DatasetConfig:
    """Load ``configs/datasets/<name>.yaml``, or a YAML file given by path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = CONFIG_DIR / f"{text}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"no dataset config {path}; available: {available}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _fail(path, f"invalid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise _fail(path, "expected a mapping at the top level")
    return config_from_dict(doc, source=path)


def config_for_layout(layout: str, root: str | os.PathLike[str], **overrides: Any) -> DatasetConfig:
    """A config for a self-describing dataset (nnU-Net or MSD): the name is the folder's name.

    The folder name must be a safe dataset name (see ``name`` in the module docstring); a
    ``name`` override (e.g. from a dataset.json) is checked the same way.
    """
    root = Path(root).resolve()
    doc = {"name": overrides.pop("name", root.name), "layout": layout, "root": str(root)}
    base = config_from_dict(doc, where=f"{layout} dataset folder {root}")
    return replace(base, **overrides) if overrides else base


def sample_dataset_names() -> list[str]:
    """Names of the shipped sample-dataset configs (``configs/datasets/sample_*.yaml``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("sample_*.yaml"))

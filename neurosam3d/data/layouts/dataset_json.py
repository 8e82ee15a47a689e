"""Reading the ``dataset.json`` of nnU-Net v2 and MSD datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neurosam3d.data.config import ConfigError


def read_dataset_json(root: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """Parse ``root/dataset.json``; raises :class:`ConfigError` if absent, invalid or incomplete."""
    path = root / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; nnU-Net and MSD datasets describe themselves here")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    missing = [key for key in required if key not in doc]
    if missing:
        raise ConfigError(f"{path}: missing keys {missing}")
    return doc


#: Largest label value accepted (label maps are read as integers up to int32).
MAX_LABEL_VALUE = 2**31 - 1


def mapping(doc: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    """``doc[key]``, which must be a JSON object; :class:`ConfigError` naming file and key."""
    value = doc[key]
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path}: {key!r} must be an object (name -> value), not {type(value).__name__}"
        )
    return value


def numbered_names(doc: dict[str, Any], key: str, path: Path) -> dict[int, str]:
    """``doc[key]`` (``{"0": "background", "2": "tumour"}``) as number -> name, checked: keys
    are whole numbers in ``0..MAX_LABEL_VALUE`` and names non-empty strings."""
    numbered: dict[int, str] = {}
    for index, name in mapping(doc, key, path).items():
        try:
            number = int(index)
        except ValueError:
            raise ConfigError(f"{path}: {key!r} key {index!r} is not an integer") from None
        if not 0 <= number <= MAX_LABEL_VALUE:
            raise ConfigError(f"{path}: {key!r} key {index!r} is outside 0..{MAX_LABEL_VALUE}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: {key!r} entry {index!r} must be a name, not {name!r}")
        numbered[number] = name
    return dict(sorted(numbered.items()))


def indexed_names(doc: dict[str, Any], key: str, path: Path) -> list[str]:
    """The channel names of ``doc[key]`` (``{"0": "T1", "1": "T2"}``) in index order; the
    indices must be ``0..n-1``."""
    numbered = numbered_names(doc, key, path)
    if list(numbered) != list(range(len(numbered))):
        raise ConfigError(f"{path}: {key!r} indices must be 0..{len(numbered) - 1}")
    return list(numbered.values())


def check_label_value(value: Any, name: str, path: Path) -> int:
    """One label value: an integer (not a bool) in ``0..MAX_LABEL_VALUE``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: label {name!r} must be an integer or a list of integers")
    if not 0 <= value <= MAX_LABEL_VALUE:
        raise ConfigError(f"{path}: label {name!r} has value {value}, outside 0..{MAX_LABEL_VALUE}")
    return value


def check_unique_values(values: dict[str, int], path: Path) -> None:
    """Two names for one label value would give two identical masks: refuse, naming both."""
    seen: dict[int, str] = {}
    for name, value in values.items():
        if value in seen:
            raise ConfigError(
                f"{path}: labels {seen[value]!r} and {name!r} both map to value {value}"
            )
        seen[value] = name


def dataset_licence(doc: dict[str, Any]) -> str | None:
    """The licence a dataset.json states (``licence`` or ``license``), if any."""
    value = doc.get("licence", doc.get("license"))
    return str(value) if value else None

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


def dataset_licence(doc: dict[str, Any]) -> str | None:
    """The licence a dataset.json states (``licence`` or ``license``), if any."""
    value = doc.get("licence", doc.get("license"))
    return str(value) if value else None

"""Read ``params.yaml``, the one place for pipeline parameters (DVC reads the same file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class DatasetParams:
    """One raw dataset: its partition key, raw folder (relative to the project) and prepare options."""

    key: str
    raw: str
    source: str


def load_params(project: Path) -> dict[str, Any]:
    """The parsed ``params.yaml`` of ``project``."""
    path = project / "params.yaml"
    with path.open() as handle:
        params = yaml.safe_load(handle)
    if not isinstance(params, dict) or "datasets" not in params:
        raise ValueError(f"{path}: expected a mapping with a 'datasets' section")
    return params


def datasets(params: dict[str, Any]) -> dict[str, DatasetParams]:
    """The configured raw datasets, keyed by partition key (= DVC ``prepare@<key>`` stage)."""
    return {
        key: DatasetParams(key=key, raw=str(entry["raw"]), source=str(entry["source"]))
        for key, entry in sorted(params["datasets"].items())
    }

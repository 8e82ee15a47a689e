"""Read ``params.yaml``, the one place for pipeline parameters (DVC reads the same file).

Each step's section holds the options of its ``neurosam3d`` subcommand; :func:`cli_options`
expands a section exactly as DVC does for ``${section}`` in dvc.yaml (``parsing.list: append``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_params(project: Path) -> dict[str, Any]:
    """The parsed ``params.yaml`` of ``project``."""
    path = project / "params.yaml"
    with path.open() as handle:
        params = yaml.safe_load(handle)
    if not isinstance(params, dict) or "prepare" not in params:
        raise ValueError(f"{path}: expected a mapping with a 'prepare' section")
    return params


def cli_options(section: dict[str, Any]) -> list[str]:
    """``{"out": "x", "dataset": ["a", "b"], "strict": True}`` -> ``--out x --dataset a --dataset b --strict``."""
    args: list[str] = []
    for key, value in section.items():
        if isinstance(value, bool):
            args += [f"--{key}"] if value else [f"--no-{key}"]
        elif isinstance(value, list):
            for item in value:
                args += [f"--{key}", str(item)]
        else:
            args += [f"--{key}", str(value)]
    return args

"""The Dagster Pipes side of a stage run as a subprocess (the training stage).

``python -m pipelines.pipes_stage --summary FILE -- COMMAND`` runs COMMAND (a DVC stage command,
e.g. ``.venv/bin/neurosam3d train ...``) in a shell, streaming its output, then reports the scalar
fields of the JSON summary it wrote back to Dagster as materialisation metadata. Without a Dagster
Pipes context (run by hand, by DVC, or on a cluster) it simply runs the command. The library
itself stays free of Dagster.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dagster_pipes import open_dagster_pipes


def flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of a JSON object as ``a.b`` keys (lists are skipped)."""
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.pipes_stage")
    parser.add_argument("--summary", type=Path, required=True, help="JSON the command writes")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the shell command")
    args = parser.parse_args(argv)
    command = " ".join(args.command[1:] if args.command[:1] == ["--"] else args.command)
    with open_dagster_pipes() as pipes:
        pipes.log.info(f"running: {command}")
        code = subprocess.run(command, shell=True, check=False).returncode
        if code != 0:
            pipes.log.error(f"command failed with exit code {code}")
            return code
        summary = json.loads(args.summary.read_text())
        pipes.report_asset_materialization(metadata=flatten(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

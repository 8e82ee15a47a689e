"""Options shared by the commands that run a model (``evaluate``, ``predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Checkpoint = Annotated[
    Path | None,
    typer.Option("--checkpoint", exists=True, dir_okay=False, help="Checkpoint file."),
]
RegisteredModel = Annotated[
    str | None, typer.Option("--model", help="Registered model, models:/NAME@ALIAS.")
]
Arch = Annotated[
    str | None,
    typer.Option("--arch", help="Model configuration when the checkpoint does not tell."),
]
Orientation = Annotated[
    str | None, typer.Option("--orientation", help="Reorient to these axis codes, e.g. RAS.")
]
SpacingMm = Annotated[
    float | None, typer.Option("--spacing-mm", help="Resample to this isotropic spacing (mm).")
]


def model_source(checkpoint: Path | None, model: str | None) -> str:
    """The one model source given: a checkpoint path or a ``models:/NAME@ALIAS`` URI."""
    if (checkpoint is None) == (model is None):
        raise typer.BadParameter(
            "give exactly one of --checkpoint PATH and --model models:/NAME@ALIAS"
        )
    return str(checkpoint) if checkpoint is not None else str(model)

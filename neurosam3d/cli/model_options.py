"""Options shared by the commands that run a model (``evaluate``, ``predict``).

``parse_spacing`` and ``parse_window`` (:mod:`neurosam3d.cli.values`) are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neurosam3d.cli.values import parse_spacing, parse_window

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
    str | None,
    typer.Option(
        "--orientation",
        help="Reorient to these axis codes (RAS), or 'native' for the stored axes. Default: what "
        "the model's preprocessing records.",
    ),
]
SpacingMm = Annotated[
    str | None,
    typer.Option(
        "--spacing-mm",
        help="Resample to this voxel size in mm: one value (1.5) or three (1,1,2.5), or "
        "'native'. Default: what the model's preprocessing records.",
    ),
]
CtWindow = Annotated[
    str | None,
    typer.Option(
        "--ct-window",
        help="LOW,HIGH: the HU clip of CT volumes. Default: what the model's preprocessing "
        "records.",
    ),
]


def model_source(checkpoint: Path | None, model: str | None) -> str:
    """The one model source given: a checkpoint path or a ``models:/NAME@ALIAS`` URI."""
    if (checkpoint is None) == (model is None):
        raise typer.BadParameter(
            "give exactly one of --checkpoint PATH and --model models:/NAME@ALIAS"
        )
    return str(checkpoint) if checkpoint is not None else str(model)


def resolve_preprocessing(
    model: Any,
    checkpoint: str | None,
    orientation: str | None,
    spacing_mm: str | None,
    ct_window: str | None,
) -> tuple[Any, list[str], str]:
    """The model's :class:`~neurosam3d.transforms.Preprocessing` with the options applied:
    ``(record, overridden fields, where the record came from)``."""
    from neurosam3d.evaluation.models import model_preprocessing
    from neurosam3d.transforms import PreprocessingError

    record, source = model_preprocessing(model, checkpoint)
    try:
        effective, overridden = record.overridden(
            orientation=orientation,
            spacing_mm=parse_spacing(spacing_mm),
            ct_window=parse_window(ct_window),
        )
    except PreprocessingError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return effective, overridden, source


__all__ = ["parse_spacing", "parse_window", "resolve_preprocessing"]

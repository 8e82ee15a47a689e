"""Options shared by the commands that run a model (``evaluate``, ``predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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


def parse_spacing(text: str | None) -> float | tuple[float, float, float] | str | None:
    """``"1.5"`` -> 1.5; ``"1,1,2.5"`` -> (1.0, 1.0, 2.5); ``"native"`` -> ``"native"``; None or
    ``""`` -> None."""
    if not text:
        return None
    if str(text).strip().lower() == "native":
        return "native"
    try:
        parts = [float(p) for p in str(text).split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"not a spacing in mm: {text!r}") from exc
    if len(parts) not in (1, 3) or min(parts) <= 0:
        raise typer.BadParameter("give one positive spacing in mm or three, comma-separated")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1], parts[2])


def model_source(checkpoint: Path | None, model: str | None) -> str:
    """The one model source given: a checkpoint path or a ``models:/NAME@ALIAS`` URI."""
    if (checkpoint is None) == (model is None):
        raise typer.BadParameter(
            "give exactly one of --checkpoint PATH and --model models:/NAME@ALIAS"
        )
    return str(checkpoint) if checkpoint is not None else str(model)


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"-200,300"`` -> (-200.0, 300.0); None -> None."""
    if not text:
        return None
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"not LOW,HIGH in HU: {text!r}") from exc
    if not low < high:
        raise typer.BadParameter(f"the window's low end {low} is not below its high end {high}")
    return low, high


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

"""``neurosam3d predict``: segment a structure of a volume from user clicks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurosam3d.cli import app
from neurosam3d.cli import model_options as options


@app.command("predict")
def predict_command(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="NIfTI image.")],
    out: Annotated[Path, typer.Option("--out", help="Output mask (.nii.gz) on the image's grid.")],
    point: Annotated[
        list[str],
        typer.Option("--point", help="x,y,z,+ (foreground) or x,y,z,- (background); repeatable."),
    ],
    checkpoint: options.Checkpoint = None,
    model: options.RegisteredModel = None,
    world: Annotated[
        bool,
        typer.Option("--world", help="Coordinates are world mm (NIfTI RAS+), not voxel indices."),
    ] = False,
    box: Annotated[
        str | None,
        typer.Option("--box", help="x0,y0,z0,x1,y1,z1: nothing is predicted outside it."),
    ] = None,
    modality: Annotated[
        str, typer.Option("--modality", help="CT, MR or auto (intensity normalisation).")
    ] = "auto",
    arch: options.Arch = None,
    orientation: options.Orientation = None,
    spacing_mm: options.SpacingMm = None,
    ct_window: options.CtWindow = None,
    max_windows: Annotated[
        int, typer.Option("--max-windows", min=1, help="Most windows to grow the mask into.")
    ] = 27,
    probabilities: Annotated[
        Path | None, typer.Option("--probabilities", help="Also write the float32 probability map.")
    ] = None,
    channel: Annotated[
        int | None,
        typer.Option(
            "--channel",
            min=0,
            help="Channel of a multi-channel (4D) image to segment, counted from 0; required "
            "for such images.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="torch device.")] = "cpu",
) -> None:
    """Segment IMAGE from clicks; write a uint8 mask on the original grid.

    The image is prepared as the model's preprocessing record says (orientation, spacing,
    intensity rule; `neurosam3d checkpoint inspect` shows it); --orientation, --spacing-mm and
    --ct-window override it.
    """
    import numpy as np

    from neurosam3d.evaluation.models import checkpoint_path, resolve_model
    from neurosam3d.inference import predict_file

    path = checkpoint_path(options.model_source(checkpoint, model))
    network = resolve_model(path, name=arch, device=device)
    preprocessing, overridden, source = options.resolve_preprocessing(
        network, str(path), orientation, spacing_mm, ct_window
    )
    typer.echo(
        f"preprocessing: {preprocessing.describe()} ({source}"
        + (f"; overridden: {', '.join(overridden)})" if overridden else ")"),
        err=True,
    )
    try:
        result = predict_file(
            network,
            image,
            point,
            out,
            world=world,
            box=box,
            modality=modality,
            preprocessing=preprocessing,
            max_windows=max_windows,
            probabilities_out=probabilities,
            channel=channel,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{out}: {int(np.count_nonzero(result.mask))} voxels, {result.windows} window(s)")

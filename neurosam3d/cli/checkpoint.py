"""``neurosam3d checkpoint``: inspect a checkpoint, convert between checkpoint formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Inspect model checkpoints and convert between the release .pth, Lightning and "
    "safetensors formats.",
    no_args_is_help=True,
)

SUFFIX_FORMATS = {
    ".safetensors": "safetensors",
    ".ckpt": "lightning",
    ".pth": "release",
    ".pt": "release",
}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Checkpoint file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Detected architecture, parameter count, key report and preprocessing of a checkpoint.

    The preprocessing is the record the file holds, else the default of its kind (release
    files: SAM-Med3D's RAS, 1.5 mm, per-crop z-score; others: native grid, CT [-1000, 1000] +
    z-score); --json prints it under "preprocessing" with "source" saying which.

    Exit code 0 when the keys fit the detected architecture exactly, 1 when they do not,
    2 when the file cannot be read or is refused.
    """
    from neurosam3d.model import CheckpointError, inspect_checkpoint
    from neurosam3d.model.sam2d import Sam2DConfig

    try:
        info = inspect_checkpoint(path)
    except CheckpointError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        report = info.report
        typer.echo(
            json.dumps(
                {
                    "path": info.path,
                    "format": info.format,
                    "architecture": info.config_name,
                    "config": info.config.to_dict(),
                    "num_tensors": info.num_tensors,
                    "num_parameters": info.num_parameters,
                    "keys_ok": report.ok,
                    "missing": report.missing,
                    "unexpected": report.unexpected,
                    "mismatched": [[k, list(a), list(b)] for k, a, b in report.mismatched],
                    "metadata": info.metadata,
                    "preprocessing": None
                    if info.preprocessing is None
                    else {**info.preprocessing.to_dict(), "source": info.preprocessing_source},
                },
                sort_keys=True,
            )
        )
    else:
        typer.echo(f"file:         {info.path}")
        typer.echo(f"format:       {info.format}")
        size = info.config.img_size
        shape = f"{size} x {size}" if isinstance(info.config, Sam2DConfig) else f"{size}^3"
        typer.echo(f"architecture: {info.config_name} (input {shape})")
        typer.echo(f"parameters:   {info.num_parameters:,} in {info.num_tensors} tensors")
        for key, value in sorted(info.metadata.items()):
            typer.echo(f"{key + ':':<13} {value}")
        if info.preprocessing is not None:
            typer.echo(
                f"preprocessing: {info.preprocessing.describe()} ({info.preprocessing_source})"
            )
        typer.echo(f"keys:         {info.report}")
    if not info.report.ok:
        raise typer.Exit(code=1)


@app.command("convert")
def convert_command(
    src: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Input checkpoint.")],
    dst: Annotated[Path, typer.Argument(dir_okay=False, help="Output file (written atomically).")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="release, safetensors or lightning; default from DST's suffix "
            "(.pth/.pt release, .safetensors, .ckpt lightning).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Configuration name; detected from the weights by default."),
    ] = None,
) -> None:
    """Convert SRC (any accepted format) to DST in another format, strictly checked.

    DST records SRC's preprocessing (the default of SRC's kind when SRC has no record).
    """
    from neurosam3d.model import (
        CheckpointError,
        export_checkpoint,
        load_checkpoint,
        read_preprocessing,
    )

    fmt = to or SUFFIX_FORMATS.get(dst.suffix)
    if fmt not in ("release", "safetensors", "lightning"):
        raise _fail(
            f"cannot tell the output format of {dst}; pass --to release|safetensors|lightning"
        )
    try:
        model = load_checkpoint(src, name=name)
        preprocessing, _ = read_preprocessing(src)
    except CheckpointError as exc:
        raise _fail(str(exc)) from None
    export_checkpoint(model, dst, fmt=fmt, preprocessing=preprocessing)  # type: ignore[arg-type]
    typer.echo(f"wrote {fmt} checkpoint {dst}")

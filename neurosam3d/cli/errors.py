"""Expected failures of any subcommand as one message and an exit code, not a traceback.

Exit codes (the same for every subcommand):

* ``0``: success;
* ``1``: the command ran but failed: an output could not be written (disk full, read-only or
  unwritable folder), another process holds the dataset being written, a run's result is not acceptable (``prepare --strict`` with quarantined
  inputs), or an unexpected error (a bug: its traceback is shown);
* ``2``: bad input or usage: an unreadable, malformed or refused file (NIfTI, checkpoint,
  manifest, configuration), a missing file, a wrong option.

``--debug`` (before the subcommand) or ``NEUROSAM3D_DEBUG=1`` shows the traceback of expected
failures too.
"""

from __future__ import annotations

import os

import click
import typer
from typer.core import TyperGroup

#: Exception classes (by qualified name, so that matching imports nothing heavy) that mean the
#: input is bad: exit code 2 with the exception's message, which names the file and the problem.
INPUT_ERRORS = frozenset(
    {
        "neurosam3d.io.nifti.NiftiError",
        "neurosam3d.model.formats.CheckpointError",
        "neurosam3d.evaluation.api.ManifestError",
        "neurosam3d.training.config.ConfigError",
        "neurosam3d.training.augment.AugmentError",
        "neurosam3d.data.config.ConfigError",
        "neurosam3d.data.schema.SchemaError",
        "pyarrow.lib.ArrowInvalid",  # a file that is not Parquet (the message names it)
        "builtins.FileNotFoundError",
        "builtins.IsADirectoryError",
        "builtins.NotADirectoryError",
    }
)
#: Failures on the output side, and a writer refused because another holds the dataset: exit 1.
OUTPUT_ERRORS = frozenset(
    {"neurosam3d.io.atomic.OutputError", "neurosam3d.data.prepare.DatasetBusyError"}
)

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def debug_enabled() -> bool:
    """``NEUROSAM3D_DEBUG`` set to anything but ``""``/``0``/``false`` (``--debug`` sets it)."""
    return os.environ.get("NEUROSAM3D_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of an expected failure, or None for anything else (a bug)."""
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
    if names & OUTPUT_ERRORS:
        return EXIT_FAILURE
    if names & INPUT_ERRORS:
        return EXIT_BAD_INPUT
    return None


def message_for(exc: BaseException) -> str:
    """One paragraph: what failed and where (the exception's own message names the file)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"{exc.filename}: no such file or directory"
    return f"Error: {text}"


class FriendlyErrors(TyperGroup):
    """The root command group: runs the subcommand, turning expected failures into messages."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None or debug_enabled():
                raise
            typer.echo(message_for(exc), err=True)
            typer.echo("(--debug or NEUROSAM3D_DEBUG=1 shows the traceback)", err=True)
            raise typer.Exit(code) from exc

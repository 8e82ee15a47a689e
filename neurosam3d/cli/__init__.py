"""The ``neurosam3d`` command line.

Every pipeline step (prepare, train, evaluate, register, promote, ...) is one subcommand, called
the same way by DVC stages, Dagster assets and people. Subcommand modules import their heavy
dependencies (torch, mlflow, ...) inside the command functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os

import typer

from neurosam3d.cli.errors import FriendlyErrors
from neurosam3d.cli.promote import promote
from neurosam3d.cli.register import register

app = typer.Typer(
    name="neurosam3d",
    help="NeuroSAM3D: data preparation, training, evaluation and registry for 3D promptable segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FriendlyErrors,
    epilog="Exit codes: 0 ok, 1 failure (outputs not writable, --strict), 2 bad input or usage.",
)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show the traceback of expected failures (bad input, unwritable output) as well; "
        "the same as NEUROSAM3D_DEBUG=1.",
    ),
) -> None:
    """Set up logging for every subcommand."""
    if debug:
        os.environ["NEUROSAM3D_DEBUG"] = "1"
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


app.command()(register)
app.command()(promote)


def main() -> None:
    """Console entry point."""
    app()


from neurosam3d.cli import (  # noqa: E402, F401  (registers the commands)
    checkpoint,
    combine,
    evaluate,
    predict,
    prepare,
    store,
    train,
)

app.add_typer(checkpoint.app, name="checkpoint")
app.add_typer(store.app, name="store")

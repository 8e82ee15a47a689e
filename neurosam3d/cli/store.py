"""``neurosam3d store build``: the training store of an existing label tree.

``neurosam3d prepare`` writes the store itself; this command is for trees prepared before the
store existed or written by other tools (see :mod:`neurosam3d.store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="The training store: random-access crops of a label tree (written by prepare).",
    no_args_is_help=True,
)


@app.command("build")
def build_command(
    root: Annotated[
        Path,
        typer.Option(
            "--root", exists=True, file_okay=False, help="Label-tree root (prepare's --out)."
        ),
    ],
    manifest: Annotated[
        list[Path] | None,
        typer.Option(
            "--manifest",
            help="Manifest(s) listing the cases (repeatable). Default: ROOT/manifest.parquet.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes over cases.")
    ] = 1,
    ct_window: Annotated[
        str,
        typer.Option(
            "--ct-window",
            help="LOW,HIGH: the HU window of the CT cases' intensity statistics (training's "
            "data.ct_window; the model records it). Entries built with another are rebuilt.",
        ),
    ] = "-1000,1000",
) -> None:
    """Build or update the store entries of every case in the manifests, from the tree's files.

    Writes ROOT/<DATASET>/store<SPLIT>/<case>/ (image.b2nd, labels.b2nd, locations.npy),
    ROOT/manifests/<DATASET>_store.parquet and ROOT/store.parquet. Up-to-date entries are kept;
    the bytes are those `neurosam3d prepare` writes.
    """
    from rich.console import Console

    from neurosam3d.cli.progress import case_progress
    from neurosam3d.store import StoreError
    from neurosam3d.store.build import build_store

    try:
        low, high = (float(v) for v in ct_window.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"not LOW,HIGH in HU: {ct_window!r}") from exc
    if not low < high:
        raise typer.BadParameter(f"the window's low end {low} is not below its high end {high}")
    window = (low, high)
    console = Console(stderr=True)
    with case_progress(console) as bar:
        task = bar.add_task("store", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            path = build_store(
                root, manifest or (), workers=workers, progress=show, ct_window=window
            )
        except StoreError as exc:
            raise typer.BadParameter(str(exc), param_hint="--root") from exc
    console.print(f"store table: {path}")

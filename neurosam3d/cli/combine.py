"""``neurosam3d combine``: per-dataset prepare roots -> one root's manifests (no mask is copied)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurosam3d.cli import app


@app.command("combine")
def combine_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            file_okay=False,
            help="Combined root: OUT/manifests/ and OUT/manifest.parquet, OUT/absent.parquet, "
            "OUT/quarantine.parquet, with tree paths relative to OUT.",
        ),
    ],
    datasets: Annotated[
        Path,
        typer.Option(
            "--datasets",
            file_okay=False,
            help="Folder inside OUT holding one `neurosam3d prepare --out` root per dataset "
            "or per shard of one (DATASETS/<key>/manifests/...).",
        ),
    ],
) -> None:
    """Combine the per-dataset prepare roots under --datasets into the manifests of --out.

    Each dataset's tables are copied to OUT/manifests/ with image and mask paths re-rooted at OUT; the combined tables are rebuilt from them. The shards of a dataset prepared with --shard I/N are merged into its one set of tables; a missing, repeated, unfinished or stale shard is an error naming the folders. Tables of datasets no longer under --datasets are removed. Example: neurosam3d combine --out work/data --datasets work/data/datasets
    """
    from neurosam3d.data.combine import combine_roots

    try:
        tables = combine_roots(out, datasets)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for name, path in tables.items():
        typer.echo(f"{name}: {path}")

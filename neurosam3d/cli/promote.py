"""``neurosam3d promote``: gate the ``@challenger`` against the ``@champion`` and move the alias."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def promote(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Version to promote (default: the @challenger).")
    ] = None,
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            help="Largest allowed Dice drop of any anatomical category at the gate's click count.",
        ),
    ] = 0.02,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the comparison table; change nothing.")
    ] = False,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback", help="Move @champion back to the champion it replaced (or to --version)."
        ),
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="Default: $MLFLOW_TRACKING_URI or mlflow/mlflow.db."),
    ] = None,
    lock_dir: Annotated[
        Path | None,
        typer.Option(
            "--lock-dir",
            help="Folder of the promotion locks (default: beside the SQLite store); share it "
            "between machines that promote the same model.",
        ),
    ] = None,
) -> None:
    """Promote a model version to @champion if it passes the gate (no category worse than the
    champion by more than --margin at 5 clicks, mean not worse, same evaluation manifest and
    protocol)."""
    from mlflow import MlflowClient

    from neurosam3d.registry.lock import default_lock_dir
    from neurosam3d.registry.promotion import Action
    from neurosam3d.registry.promotion import promote as run_promotion
    from neurosam3d.registry.promotion import rollback as run_rollback
    from neurosam3d.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    locks = lock_dir or default_lock_dir(uri)
    try:
        if rollback:
            before, after = run_rollback(client, model, locks, to_version=version)
            typer.echo(f"{model}: @champion rolled back from v{before} to v{after}")
            return
        outcome = run_promotion(
            client, model, locks, version=version, margin=margin, dry_run=dry_run
        )
    except (LookupError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    champion = f"v{outcome.champion_before}" if outcome.champion_before else "(none)"
    typer.echo(f"{model}: challenger v{outcome.challenger} vs champion {champion}\n")
    typer.echo(outcome.gate.table_markdown())
    for reason in outcome.gate.reasons:
        typer.echo(f"- {reason}")
    verdict = {
        Action.PROMOTED: f"promoted: @champion is now v{outcome.champion_after}",
        Action.ALREADY_CHAMPION: f"v{outcome.challenger} already is @champion: nothing to do",
        Action.REJECTED: f"rejected: @champion stays {champion}",
        Action.DRY_RUN: f"dry run: the gate {'passes' if outcome.gate.passed else 'fails'}",
    }[outcome.action]
    typer.echo(f"\n{verdict}")

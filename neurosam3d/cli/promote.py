"""``neurosam3d promote``: gate the ``@challenger`` against the ``@champion`` and move the alias."""

from __future__ import annotations

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
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the gate's paired bootstrap over targets.")
    ] = 0,
) -> None:
    """Promote a model version to @champion if it passes the gate: same evaluation manifest and
    protocol; the 95% lower bound of the mean Dice difference (paired bootstrap over targets)
    above -margin; no category worse than the champion by more than --margin at 5 clicks.

    The registry arbitrates racing promoters on any host (a numbered round claimed in MLflow):
    one wins, the others exit with status 2 having changed nothing."""
    from mlflow import MlflowClient

    from neurosam3d.registry.arbiter import PromotionConflict
    from neurosam3d.registry.promotion import Action
    from neurosam3d.registry.promotion import promote as run_promotion
    from neurosam3d.registry.promotion import rollback as run_rollback
    from neurosam3d.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        if rollback:
            before, after = run_rollback(client, model, to_version=version)
            typer.echo(f"{model}: @champion rolled back from v{before} to v{after}")
            return
        outcome = run_promotion(
            client, model, version=version, margin=margin, dry_run=dry_run, seed=seed
        )
    except PromotionConflict as err:
        typer.echo(f"conflict: {err}", err=True)
        raise typer.Exit(2) from err
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
        Action.CONFLICT: f"conflict: another promotion won; @champion stays {champion}",
    }[outcome.action]
    typer.echo(f"\n{verdict}")
    if outcome.action is Action.CONFLICT:
        raise typer.Exit(2)

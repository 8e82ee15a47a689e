"""``neurosam3d train``: one tracked training run from a YAML configuration.

``neurosam3d train --config FILE [--set K=V ...]`` is ours; ``neurosam3d train fit|validate|test``
takes the seed's Lightning-CLI flags (:mod:`neurosam3d.cli.seed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurosam3d.cli import app

train_app = typer.Typer(
    help="Train the promptable 3D model (ours: --config/--set; the seed's: fit/validate/test).",
    invoke_without_command=True,
)
app.add_typer(train_app, name="train")
_SEED_CONTEXT = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "help_option_names": [],  # --help goes to the seed parser, which lists the seed flags
}


def _seed_command(name: str, summary: str) -> None:
    def command(ctx: typer.Context) -> None:
        from neurosam3d.cli.seed import main

        raise typer.Exit(code=main(name, list(ctx.args)))

    command.__doc__ = summary
    train_app.command(name, context_settings=_SEED_CONTEXT)(command)


_seed_command(
    "fit",
    "Seed habit: train (--config FILE --SECTION.KEY VALUE ... --ckpt_path to resume); "
    "`neurosam3d train fit --help` lists the flags.",
)
_seed_command("validate", "Seed habit: click-protocol Dice on the validation split (--ckpt_path).")
_seed_command("test", "Seed habit: click-protocol Dice on the Ts split (--ckpt_path).")


@train_app.callback()
def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            exists=True,
            dir_okay=False,
            help="Training YAML, e.g. configs/demo-cpu.yaml.",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for checkpoints/, config.yaml, run.json, summary.json; must not hold an earlier "
            "run unless --resume continues it.",
        ),
    ] = Path("work/train"),
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Override one key, repeatable: --set trainer.max_steps=20 (YAML value).",
        ),
    ] = None,
    overrides_text: Annotated[
        str | None,
        typer.Option(
            "--overrides",
            help="Several KEY=VALUE overrides in one string, split like a shell command "
            "(params.yaml's train.overrides); applied before --set.",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", help="Shortcut for --set trainer.accelerator=... (cpu, gpu, auto)."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            exists=True,
            dir_okay=False,
            help="Continue from a checkpoint, e.g. OUT/checkpoints/last.ckpt.",
        ),
    ] = None,
) -> None:
    """Train the promptable 3D model with simulated clicks and log the run to MLflow.

    Crops are read from the training store of the label tree (data.root/store.parquet, written by
    `neurosam3d prepare`; `neurosam3d store build --root DIR` for older trees). A used --out is
    refused unless --resume continues that run. Prints the summary (MLflow run id, checkpoints, validation Dice after 1/5/10 clicks before
    and after training) as JSON; the same JSON is written to OUT/summary.json.
    """
    if ctx.invoked_subcommand is not None:
        return  # fit / validate / test parse their own flags
    if config is None:
        raise typer.BadParameter("--config FILE is required", param_hint="--config")
    import json
    import shlex
    from dataclasses import asdict

    from neurosam3d.store import StoreError
    from neurosam3d.training import ConfigError, load_config
    from neurosam3d.training import train as run_training

    extra = [
        *shlex.split(overrides_text or ""),
        *(overrides or []),
        *([f"trainer.accelerator={device}"] if device else []),
    ]
    try:
        cfg = load_config(config, extra)
        summary = run_training(cfg, out, resume=str(resume) if resume else None)
    except (ConfigError, StoreError) as exc:  # the message names the file and the fix
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(json.dumps(asdict(summary), indent=2))

"""``neurosam3d register``: a trained, evaluated checkpoint becomes a model version (@challenger)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _data_version(path: Path | None) -> str | None:
    """The md5 recorded in a DVC ``.dvc`` file (YAML; ``outs[0].md5``), e.g. data.dvc."""
    if path is None:
        return None
    import yaml

    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def register(
    name: Annotated[str, typer.Option("--name", help="Registered model name.")],
    train_summary: Annotated[
        Path,
        typer.Option(
            "--train-summary",
            dir_okay=False,
            help="summary.json of `neurosam3d train` (its MLflow run gets the model). With "
            "--checkpoint it may be missing, or name another tracking store (outputs restored by "
            "`dvc pull`): the model then goes into a new run of the training's experiment.",
        ),
    ],
    evaluation: Annotated[
        Path,
        typer.Option(
            "--evaluation",
            exists=True,
            file_okay=False,
            help="Output folder of `neurosam3d evaluate` (summary.json, tables/, plot).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for registration.json.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            exists=True,
            dir_okay=False,
            help="The evaluated checkpoint (default: the training summary's best_checkpoint).",
        ),
    ] = None,
    data_version_file: Annotated[
        Path | None,
        typer.Option(
            "--data-version-file",
            exists=True,
            dir_okay=False,
            help="A .dvc file (e.g. data.dvc) whose md5 is the raw data version tagged on the model.",
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="Default: $MLFLOW_TRACKING_URI or mlflow/mlflow.db."),
    ] = None,
    lock_dir: Annotated[
        Path | None, typer.Option("--lock-dir", help="Registry lock folder.")
    ] = None,
) -> None:
    """Register an evaluated checkpoint of a training run with its evaluation; tag it @challenger."""
    from neurosam3d.io.atomic import atomic_write_text
    from neurosam3d.registry.lock import default_lock_dir
    from neurosam3d.registry.register import register_model
    from neurosam3d.tracking import git_commit, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    registration = register_model(
        tracking_uri=uri,
        name=name,
        train_summary=train_summary,
        evaluation_dir=evaluation,
        checkpoint=checkpoint,
        lock_dir=lock_dir or default_lock_dir(uri),
        data_version=_data_version(data_version_file),
        git_commit=git_commit(),
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "registration.json", registration.to_json())
    state = "registered" if registration.created else "already registered as"
    typer.echo(f"{state} {registration.model_uri} (@challenger)")

"""``neurosam3d evaluate``: interactive evaluation of a model on manifests (see neurosam3d.evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurosam3d.cli import app
from neurosam3d.cli import model_options as options


@app.command("evaluate")
def evaluate_command(
    manifest: Annotated[
        list[Path],
        typer.Option(
            "--manifest", exists=True, dir_okay=False, help="Manifest Parquet file (repeatable)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    checkpoint: options.Checkpoint = None,
    model: options.RegisteredModel = None,
    clicks: Annotated[int, typer.Option("--clicks", min=1, help="Clicks per target.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Protocol seed.")] = 0,
    click_rule: Annotated[
        str, typer.Option("--click-rule", help="random_error or center_error.")
    ] = "random_error",
    nsd_tolerance_mm: Annotated[
        float, typer.Option("--nsd-tolerance-mm", min=0.0, help="NSD tolerance (mm).")
    ] = 2.0,
    training_manifest: Annotated[
        Path | None,
        typer.Option(
            "--training-manifest",
            exists=True,
            dir_okay=False,
            help="The model's training manifest: (dataset, class) pairs of its Tr rows are "
            "'seen' (Val/Ts rows do not count).",
        ),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Name in the results' model column.")
    ] = None,
    arch: options.Arch = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            help="Label-tree root (default: the manifest's folder, or its parent for manifests/*.parquet).",
        ),
    ] = None,
    orientation: options.Orientation = None,
    spacing_mm: options.SpacingMm = None,
    class_masks: Annotated[
        bool, typer.Option("--class-masks", help="Also write one binary mask per class.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="torch device.")] = "cpu",
) -> None:
    """Run the interactive protocol; write results.parquet, tables/, plots and summary.json."""
    import json

    from neurosam3d.evaluation import evaluate
    from neurosam3d.evaluation.api import ManifestError

    source = options.model_source(checkpoint, model)
    try:
        report = evaluate(
            source,
            list(manifest),
            out,
            clicks=clicks,
            seed=seed,
            click_rule=click_rule,
            nsd_tolerance_mm=nsd_tolerance_mm,
            training_manifest=training_manifest,
            model_name=model_name,
            architecture=arch,
            data_root=data_root,
            orientation=orientation,
            spacing_mm=spacing_mm,
            class_masks=class_masks,
            device=device,
        )
    except ManifestError as exc:  # unsafe names or paths, wrong schema: name the file and row
        raise typer.BadParameter(str(exc), param_hint="--manifest") from exc
    typer.echo((report.out_dir / "tables" / "categories.md").read_text())
    typer.echo(json.dumps({"mean_dice": report.summary["mean_dice"], "out": str(report.out_dir)}))

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
        list[Path] | None,
        typer.Option(
            "--manifest", exists=True, dir_okay=False, help="Manifest Parquet file (repeatable)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    checkpoint: options.Checkpoint = None,
    model: options.RegisteredModel = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="full: every window overlapping the target or prediction predicted after each "
            "click, on the native grid (or --orientation/--spacing-mm); sam-med3d: upstream "
            "SAM-Med3D's validation (1.5 mm RAS, one crop, z-norm on voxels > 0), comparable "
            "with published numbers; slice2d: a 2-D model (SAM sam_vit_b_01ec64.pth, SAM-Med2D "
            "sam-med2d_b.pth) on every axial (RAS) slice containing the target, one click per "
            "slice and round ('N points' rows).",
        ),
    ] = "full",
    clicks: Annotated[int, typer.Option("--clicks", min=1, help="Clicks per target.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Protocol seed.")] = 0,
    click_rule: Annotated[
        str, typer.Option("--click-rule", help="random_error or center_error.")
    ] = "random_error",
    nsd_tolerance_mm: Annotated[
        float | None,
        typer.Option(
            "--nsd-tolerance-mm",
            min=0.0,
            help="NSD tolerance (mm); default 2 for full and slice2d, 1 for sam-med3d.",
        ),
    ] = None,
    training_manifest: Annotated[
        Path | None,
        typer.Option(
            "--training-manifest",
            exists=True,
            dir_okay=False,
            help="Override for seen/unseen (default: the pairs the checkpoint records from its "
            "training): (dataset, class) pairs of this manifest's Tr rows are 'seen' (Val/Ts "
            "rows do not count).",
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
    ct_window: options.CtWindow = None,
    max_windows: Annotated[
        int,
        typer.Option("--max-windows", min=1, help="Most windows a target grows into (full)."),
    ] = 27,
    class_masks: Annotated[
        bool, typer.Option("--class-masks", help="Also write one binary mask per class.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="auto (a GPU when present), cpu, cuda, cuda:1...")
    ] = "auto",
    amp: Annotated[
        str, typer.Option("--amp", help="auto (bf16 on a GPU, none on CPU), bf16 or none.")
    ] = "auto",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Targets of a case evaluated in parallel.")
    ] = 1,
    shard: Annotated[
        str,
        typer.Option(
            "--shard",
            help="I/N: evaluate every N-th case from the I-th (deterministic); then "
            "--summarise the folder once all N are done.",
        ),
    ] = "1/1",
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip cases whose results part is already written.")
    ] = False,
    summarise: Annotated[
        Path | None,
        typer.Option(
            "--summarise",
            exists=True,
            file_okay=False,
            help="Only rebuild results.parquet, tables, plots and summary.json of this output "
            "folder from its parts (after a sharded run).",
        ),
    ] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            exists=True,
            file_okay=False,
            help="Evaluation folder (repeatable, same manifests): write their results side by "
            "side (results.parquet, tables/, dice_vs_clicks.png) in --out, e.g. a 3-D model "
            "beside SAM and SAM-Med2D.",
        ),
    ] = None,
) -> None:
    """Run an interactive protocol; write per-case parts, then results.parquet, tables/, plots
    and summary.json (or, with --summarise DIR, only rebuild those from DIR's parts; with
    --compare DIR... --out OUT, only tabulate those evaluations together).

    Inputs are prepared as the model's preprocessing record says (`neurosam3d checkpoint
    inspect` shows it); --orientation, --spacing-mm and --ct-window override it, and run.json /
    summary.json record the effective one and what was overridden.
    """
    import json

    from neurosam3d.data.shards import parse_shard
    from neurosam3d.evaluation.api import (
        EvaluationStateError,
        ManifestError,
        evaluate,
    )
    from neurosam3d.evaluation.api import (
        summarise as summarise_folder,
    )

    if compare:
        from neurosam3d.evaluation.compare import compare as compare_folders

        if out is None or manifest or summarise is not None:
            raise typer.BadParameter(
                "--compare DIR... takes --out OUT and no --manifest/--summarise"
            )
        try:
            written = compare_folders(list(compare), out)
        except EvaluationStateError as exc:
            raise typer.BadParameter(str(exc), param_hint="--compare") from exc
        typer.echo(written["categories"].with_suffix(".md").read_text())
        return
    if summarise is not None:
        try:
            report = summarise_folder(summarise)
        except EvaluationStateError as exc:
            raise typer.BadParameter(str(exc), param_hint="--summarise") from exc
    else:
        if not manifest or out is None:
            raise typer.BadParameter("give --manifest FILE and --out DIR (or --summarise DIR)")
        source = options.model_source(checkpoint, model)
        try:
            shard_index = parse_shard(shard)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--shard") from exc
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
                spacing_mm=options.parse_spacing(spacing_mm),
                ct_window=options.parse_window(ct_window),
                class_masks=class_masks,
                device=device,
                amp=amp,
                protocol=protocol,
                max_windows=max_windows,
                shard=shard_index,
                resume=resume,
                workers=workers,
            )
        except ManifestError as exc:  # unsafe names or paths, wrong schema: name the file and row
            raise typer.BadParameter(str(exc), param_hint="--manifest") from exc
        except EvaluationStateError as exc:
            raise typer.BadParameter(str(exc), param_hint="--out") from exc
        except ValueError as exc:  # protocol options that do not go together
            raise typer.BadParameter(str(exc)) from exc
        if report is None:
            typer.echo(
                f"shard {shard} written to {out}; once every shard is done: "
                f"neurosam3d evaluate --summarise {out}"
            )
            return
    typer.echo((report.out_dir / "tables" / "categories.md").read_text())
    typer.echo(json.dumps({"mean_dice": report.summary["mean_dice"], "out": str(report.out_dir)}))

"""``neurosam3d prepare``: raw datasets -> per-class label trees + Parquet manifests.

See :mod:`neurosam3d.data.prepare` for the library functions and docs/manifest.md for the
output layout.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from neurosam3d.cli import app
from neurosam3d.cli.values import parse_spacing

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class SelfDescribingLayout(StrEnum):
    """Layouts whose dataset.json describes them fully (no config needed)."""

    nnunet = "nnunet"
    msd = "msd"


def _show_progress(bar: Progress, task: TaskID, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)


@app.command("prepare")
def prepare_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output root: label trees and training-store entries go to OUT/<dataset>/, "
            "manifests to OUT/manifests/ and the combined OUT/manifest.parquet, "
            "OUT/absent.parquet, OUT/quarantine.parquet, OUT/store.parquet.",
        ),
    ],
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            help="A configured dataset: a name in configs/datasets/ (e.g. amos22, "
            "sample_totalsegmentator) or a path to a dataset YAML. Repeatable.",
        ),
    ] = None,
    all_samples: Annotated[
        bool,
        typer.Option(
            "--all-samples",
            help="Prepare every shipped sample dataset (configs/datasets/sample_*).",
        ),
    ] = False,
    layout: Annotated[
        SelfDescribingLayout | None,
        typer.Option(
            "--layout",
            help="Prepare an nnU-Net v2 or MSD dataset folder without a config (needs --root); "
            "class names come from its dataset.json, the dataset name from the folder name.",
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", file_okay=False, help="The dataset folder for --layout (e.g. Dataset001_X)."
        ),
    ] = None,
    raw_root: Annotated[
        Path | None,
        typer.Option(
            "--raw-root",
            file_okay=False,
            help="Folder that relative config roots are resolved against. Default: ./data if "
            "it holds the dataset, else the repository's samples/.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes over cases. Default: all cores."),
    ] = None,
    spacing_mm: Annotated[
        str | None,
        typer.Option(
            "--spacing-mm",
            "--resample-spacing",
            help="Resample every case to this voxel size in mm: one value (1.5, SAM-Med3D's "
            "choice) or three (1,1,2.5). Off by default: the native grid is kept. "
            "(--resample-spacing: the old name, deprecated.)",
        ),
    ] = None,
    orientation: Annotated[
        str | None,
        typer.Option(
            "--orientation",
            help="Reorient every case to these axis codes (RAS, SAM-Med3D's choice). Off by "
            "default: the stored axes are kept.",
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            min=0.0,
            max=0.99,
            help="Split rule: move this fraction of Tr cases to Val, chosen by a stable hash of "
            "the case id (overrides the config's val_fraction). Default: the config's (0).",
        ),
    ] = None,
    split_seed: Annotated[
        int | None,
        typer.Option(
            "--split-seed", help="Seed of the --val-fraction hash (default: config's, 0)."
        ),
    ] = None,
    compresslevel: Annotated[
        int,
        typer.Option(
            "--compresslevel",
            min=1,
            max=3,
            help="igzip level (1-3) of written images; masks always use level 1 (smaller and faster on sparse masks).",
        ),
    ] = 3,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit with status 1 if anything was quarantined."),
    ] = False,
    shard: Annotated[
        str,
        typer.Option(
            "--shard",
            help="I/N: prepare only the cases of shard I of N (a stable hash of the case id), "
            "so N processes or machines prepare one dataset at once, each shard into its own "
            "--out; `neurosam3d combine` merges them. Default 1/1: every case.",
        ),
    ] = "1/1",
) -> None:
    """Turn raw datasets into per-class label trees and Parquet manifests.

    Each raw label map is read once per case; one binary uint8 mask is written per class present, on the image's grid. Rejected inputs are listed in OUT/quarantine.parquet with the reason while the rest is prepared. Reruns skip unchanged cases; outputs are byte-deterministic.

    Examples: neurosam3d prepare --layout nnunet --root data/Dataset001_X --out work/prepared ; neurosam3d prepare --dataset kits23 --raw-root /datasets --out work/prepared ; neurosam3d prepare --all-samples --out work/prepared ; neurosam3d prepare --dataset totalsegmentator_v2 --shard 2/4 --out work/data/datasets/totalsegmentator_v2-2of4
    """
    from rich.console import Console

    from neurosam3d.cli.progress import case_progress
    from neurosam3d.data.config import (
        ConfigError,
        config_for_layout,
        load_dataset_config,
        sample_dataset_names,
    )
    from neurosam3d.data.prepare import DatasetBusyError, ShardConflictError, prepare_dataset
    from neurosam3d.data.shards import parse_shard

    try:
        shard_index = parse_shard(shard)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from exc
    names = list(dataset or []) + (sample_dataset_names() if all_samples else [])
    if (layout is None) != (root is None):
        raise typer.BadParameter("--layout and --root go together")
    if not names and layout is None:
        raise typer.BadParameter("give --dataset NAME, --all-samples, or --layout with --root")
    console = Console(stderr=True)
    try:
        configs = [load_dataset_config(name) for name in names]
        if layout is not None and root is not None:
            configs.append(config_for_layout(layout.value, root))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    overrides = {}
    if val_fraction is not None:
        overrides["val_fraction"] = val_fraction
    if split_seed is not None:
        overrides["split_seed"] = split_seed
    spacing = parse_spacing(spacing_mm)
    spacing = None if spacing == "native" else spacing
    quarantined = 0
    for config in configs:
        config = replace(config, **overrides)
        with case_progress(console) as bar:
            task = bar.add_task(config.name, total=None)
            try:
                report = prepare_dataset(
                    config,
                    out,
                    raw_root=raw_root,
                    workers=workers,
                    spacing_mm=spacing,
                    orientation=orientation,
                    compresslevel=compresslevel,
                    progress=partial(_show_progress, bar, task),
                    shard=shard_index,
                )
            except ConfigError as exc:
                raise typer.BadParameter(str(exc)) from exc
            except (DatasetBusyError, ShardConflictError) as exc:
                console.print(f"[red]error:[/] {exc}", soft_wrap=True)
                raise typer.Exit(1) from exc
        console.print(report.summary())
        for problem in report.problems:
            where = "/".join(p for p in (problem.case_id, problem.class_name) if p)
            console.print(f"  [yellow]{problem.kind}[/] {where}: {problem.path}: {problem.problem}")
        quarantined += len(report.problems)
    if strict and quarantined:
        raise typer.Exit(1)

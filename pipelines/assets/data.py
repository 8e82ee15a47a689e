"""Raw datasets, their label trees and manifests (one partition per dataset), the combined manifest."""

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from pipelines.partitions import DATASETS
from pipelines.resources import DvcResource, MlflowResource, ProjectResource
from pipelines.stages import run_stage

GROUP = "data"


@dg.asset(
    partitions_def=DATASETS,
    group_name=GROUP,
    kinds={"dvc"},
    description="A raw public dataset under data/ (tracked by data.dvc). Its data version is the "
    "DVC hash of its folder, so new raw data marks everything downstream stale.",
)
def raw_dataset(
    context: dg.AssetExecutionContext, project: ProjectResource, dvc: DvcResource
) -> dg.MaterializeResult:
    dataset = project.datasets()[context.partition_key]
    folder = project.path / dataset.raw
    if not folder.is_dir():
        raise dg.Failure(
            f"raw dataset {context.partition_key!r}: {folder} does not exist; put the data there "
            "(or run `make demo`, which copies samples/ into data/)"
        )
    version = dvc.folder_hash(dataset.raw)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "dvc_md5": version,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "source": dataset.source,
        },
    )


def prepared_dir(project: ProjectResource, key: str) -> Path:
    """Where ``prepare@<key>`` writes the label tree, manifests and quarantine table."""
    return project.path / project.params()["paths"]["prepared"] / key


def manifest_metadata(folder: Path) -> dict[str, Any]:
    """Row, case, class and quarantine counts of the manifests in ``folder``."""
    manifests = sorted(folder.glob("manifest*.parquet"))
    if not manifests:
        raise dg.Failure(f"no manifest*.parquet in {folder}")
    frame = pq.read_table(manifests[0] if len(manifests) == 1 else _combined(manifests)).to_pandas()
    quarantine = folder / "quarantine.parquet"
    return {
        "manifests": [m.name for m in manifests],
        "rows": len(frame),
        "cases": int(frame[["dataset", "split", "case_id"]].drop_duplicates().shape[0]),
        "classes": int(frame["class_name"].nunique()),
        "rows_per_split": dg.MetadataValue.json(
            frame["split"].value_counts().sort_index().to_dict()
        ),
        "rows_per_category": dg.MetadataValue.json(
            frame["category"].value_counts().sort_index().to_dict()
        ),
        "quarantine_rows": pq.read_metadata(quarantine).num_rows if quarantine.exists() else 0,
    }


def _combined(manifests: list[Path]) -> Path:
    """The combined ``manifest.parquet`` among per-split ones."""
    combined = [m for m in manifests if m.name == "manifest.parquet"]
    if not combined:
        raise dg.Failure(f"no combined manifest.parquet beside {[m.name for m in manifests]}")
    return combined[0]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "label_tree",
            deps=[raw_dataset],
            group_name=GROUP,
            kinds={"nifti"},
            description="Per-class binary masks on the image grid (docs/manifest.md).",
        ),
        dg.AssetSpec(
            "dataset_manifest",
            deps=["label_tree"],
            group_name=GROUP,
            kinds={"parquet"},
            description="Parquet manifests (one row per dataset, split, case, class) and the "
            "quarantine table of rejected inputs.",
        ),
    ],
    partitions_def=DATASETS,
    check_specs=[
        dg.AssetCheckSpec("masks_on_image_grid", asset="label_tree"),
        dg.AssetCheckSpec("manifest_schema", asset="dataset_manifest"),
        dg.AssetCheckSpec("quarantine_growth", asset="dataset_manifest"),
    ],
)
def prepared_dataset(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
):
    """DVC stage ``prepare@<dataset>``: ``neurosam3d prepare`` into work/prepared/<dataset>/."""
    from pipelines import checks

    key = context.partition_key
    ran = run_stage(context, f"prepare@{key}", project, dvc, mlflow)
    folder = prepared_dir(project, key)
    summary = manifest_metadata(folder)
    yield dg.MaterializeResult(
        asset_key="label_tree",
        metadata={"path": dg.MetadataValue.path(str(folder)), "ran": ran},
    )
    yield dg.MaterializeResult(asset_key="dataset_manifest", metadata=summary)
    yield checks.masks_on_image_grid(folder)
    yield checks.manifest_schema("dataset_manifest", folder)
    yield checks.quarantine_growth(context, key, int(summary["quarantine_rows"]), project)


@dg.asset(
    deps=["dataset_manifest"],
    group_name=GROUP,
    kinds={"parquet"},
    check_specs=[dg.AssetCheckSpec("manifest_schema", asset="combined_manifest")],
    description="The training manifest over every prepared dataset (DVC stage `manifest`).",
)
def combined_manifest(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
):
    from pipelines import checks

    ran = run_stage(context, "manifest", project, dvc, mlflow)
    folder = project.path / project.params()["paths"]["manifest"]
    yield dg.MaterializeResult(metadata={**manifest_metadata(folder), "ran": ran})
    yield checks.manifest_schema("combined_manifest", folder)

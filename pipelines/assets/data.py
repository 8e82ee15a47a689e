"""Raw datasets, their label trees and manifests (one partition per shard), the combined manifest.

A partition is an entry of params.yaml's ``prepare.shards`` (:mod:`pipelines.partitions`): a
dataset prepared whole, or one of the N shards of a dataset prepared by N runs at once. It is the
DVC stage ``prepare@<key>``: ``neurosam3d prepare --shard I/N`` of that dataset into its own root
``prepare.out/<key>`` (persistent, so unchanged cases are skipped), committed to dvc.lock.
``combined_manifest`` is the stage ``combine`` (``neurosam3d combine``), which re-roots every
root's tables into ``combine.out`` (``work/data``), merges each sharded dataset's shards (refusing
missing or stale ones) and rebuilds the combined tables.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from pipelines import checks
from pipelines.fingerprint import stat_fingerprint
from pipelines.partitions import SHARDS
from pipelines.resources import DvcResource, MlflowResource, ProjectResource
from pipelines.stages import run_stage

GROUP = "data"


@dg.asset(
    partitions_def=SHARDS,
    group_name=GROUP,
    kinds={"dvc"},
    description="A raw public dataset under data/ (tracked by data.dvc), per shard of it. Its data "
    "version is the DVC hash of its folder, so new raw data marks everything downstream stale.",
)
def raw_dataset(
    context: dg.AssetExecutionContext, project: ProjectResource, dvc: DvcResource
) -> dg.MaterializeResult:
    folder = project.raw_folder(context.partition_key)
    if not folder.is_dir():
        raise dg.Failure(
            f"raw dataset of {context.partition_key!r}: {folder} does not exist; put the data there "
            "(or run `make demo`, which copies samples/ into data/)"
        )
    version = dvc.folder_hash(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "dvc_md5": version,
            "stat_fingerprint": stat_fingerprint(folder),
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
        },
    )


def table_metadata(manifests: list[Path], quarantine: Path) -> dict[str, Any]:
    """Row, case, class and quarantine counts of manifest tables."""
    if not manifests:
        raise dg.Failure("no manifest tables were written")
    frame = pq.ParquetDataset([str(m) for m in manifests]).read().to_pandas()
    return {
        "tables": [m.name for m in manifests],
        "rows": len(frame),
        "cases": int(frame[["dataset", "split", "case_id"]].drop_duplicates().shape[0]),
        "classes": int(frame["class_name"].nunique()),
        "rows_per_split": dg.MetadataValue.json(
            {str(k): int(v) for k, v in frame["split"].value_counts().sort_index().items()}
        ),
        "rows_per_category": dg.MetadataValue.json(
            {str(k): int(v) for k, v in frame["category"].value_counts().sort_index().items()}
        ),
        "quarantine_rows": pq.read_metadata(quarantine).num_rows if quarantine.exists() else 0,
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "label_tree",
            deps=["raw_dataset"],
            group_name=GROUP,
            kinds={"nifti"},
            description="Per-class binary masks on the image grid (docs/manifest.md), of the "
            "shard's cases.",
        ),
        dg.AssetSpec(
            "dataset_manifest",
            deps=["label_tree"],
            group_name=GROUP,
            kinds={"parquet"},
            description="The shard's Parquet manifests (one row per split, case, class) and its "
            "quarantine table of rejected inputs.",
        ),
    ],
    partitions_def=SHARDS,
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
    """DVC stage ``prepare@<partition>``: ``neurosam3d prepare --shard I/N`` into its root."""
    key = context.partition_key
    project.raw_folder(key)  # params.yaml and the dataset config name the same raw folder
    ran = run_stage(context, f"prepare@{key}", project, dvc, mlflow)
    root = project.shard_root(key)
    name = project.dataset_name(key)
    shard = project.shard(key).spec
    tables = checks.dataset_tables(root, name)
    if _empty_shard(root, name):
        yield from _report_empty_shard(root, name, shard, ran)
        return
    summary = table_metadata(tables["manifests"], tables["quarantine"])
    yield dg.MaterializeResult(
        asset_key="label_tree",
        metadata={
            "path": dg.MetadataValue.path(str(root / name)),
            "dataset": name,
            "shard": shard,
            "ran": ran,
        },
    )
    yield dg.MaterializeResult(
        asset_key="dataset_manifest", metadata={**summary, "shard": shard, "ran": ran}
    )
    yield checks.masks_on_image_grid(root, tables["manifests"])
    yield checks.manifest_schema("dataset_manifest", tables)
    yield checks.quarantine_growth(context, key, int(summary["quarantine_rows"]), project)


def _empty_shard(root: Path, dataset: str) -> bool:
    """Whether ``root`` holds a shard (of N > 1) that has no case at all: on a dataset with fewer
    cases than shards, some shards have none, which is no failure."""
    from neurosam3d.data.shards import read_shard_record, shard_record_path

    record = shard_record_path(root / "manifests", dataset)
    return record.exists() and not read_shard_record(record).cases


def _report_empty_shard(root: Path, dataset: str, shard: str, ran: bool):
    """The materialisations and (passing) checks of a shard without cases: nothing to check."""
    note = {"shard": shard, "ran": ran, "cases": 0, "empty_shard": True}
    yield dg.MaterializeResult(
        asset_key="label_tree",
        metadata={"path": dg.MetadataValue.path(str(root)), "dataset": dataset, **note},
    )
    yield dg.MaterializeResult(asset_key="dataset_manifest", metadata={"rows": 0, **note})
    for asset, check in (
        ("label_tree", "masks_on_image_grid"),
        ("dataset_manifest", "manifest_schema"),
        ("dataset_manifest", "quarantine_growth"),
    ):
        yield dg.AssetCheckResult(asset_key=asset, check_name=check, passed=True, metadata=note)


@dg.asset(
    deps=["dataset_manifest"],
    group_name=GROUP,
    kinds={"parquet", "dvc"},
    pool="combine",
    check_specs=[dg.AssetCheckSpec("manifest_schema", asset="combined_manifest")],
    description="The training manifest over every prepared dataset (DVC stage `combine`: each "
    "dataset's tables re-rooted at work/data, combined tables rebuilt).",
)
def combined_manifest(
    context: dg.AssetExecutionContext,
    project: ProjectResource,
    dvc: DvcResource,
    mlflow: MlflowResource,
):
    ran = run_stage(context, "combine", project, dvc, mlflow)
    tables = checks.combined_tables(project.combined_root())
    yield dg.MaterializeResult(
        metadata={**table_metadata(tables["manifests"], tables["quarantine"]), "ran": ran}
    )
    yield checks.manifest_schema("combined_manifest", tables)

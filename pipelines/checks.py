"""Asset checks: label trees on their images' grids, manifest schema, quarantine growth, and the
blocking check that guards promotion. Each check reads outputs and reports; the rules themselves
(schema, gate) live in the library."""

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from pipelines.resources import MlflowResource, ProjectResource


def dataset_tables(root: Path, dataset: str) -> dict[str, Any]:
    """The per-dataset tables ``neurosam3d prepare`` wrote for ``dataset`` under ``root``."""
    from neurosam3d.data.manifest import dataset_table_paths
    from neurosam3d.data.schema import SPLITS

    paths = dataset_table_paths(root, dataset)
    return {
        "manifests": [paths[s] for s in SPLITS if paths[s].exists()],
        "absent": paths["absent"],
        "quarantine": paths["quarantine"],
    }


def combined_tables(root: Path) -> dict[str, Any]:
    """The combined tables over every dataset prepared into ``root``."""
    return {
        "manifests": [root / "manifest.parquet"],
        "absent": root / "absent.parquet",
        "quarantine": root / "quarantine.parquet",
    }


def masks_on_image_grid(root: Path, manifests: list[Path]) -> dg.AssetCheckResult:
    """Every mask listed in ``manifests`` has its image's shape and affine (NIfTI headers only)."""
    import nibabel as nib
    import numpy as np

    frame = (
        pq.ParquetDataset([str(m) for m in manifests])
        .read(columns=["image_path", "mask_path"])
        .to_pandas()
    )
    bad: list[str] = []
    grids: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
    for image_path, mask_path in frame.itertuples(index=False):
        if image_path not in grids:
            image = nib.load(root / image_path)
            grids[image_path] = (image.shape[:3], image.affine)
        shape, affine = grids[image_path]
        mask = nib.load(root / mask_path)
        if mask.shape != shape or not np.allclose(mask.affine, affine, atol=1e-5):
            bad.append(mask_path)
    return dg.AssetCheckResult(
        asset_key="label_tree",
        check_name="masks_on_image_grid",
        passed=bool(len(frame)) and not bad,
        metadata={"masks": len(frame), "off_grid": len(bad), "examples": bad[:10]},
    )


def manifest_schema(asset: str, tables: dict[str, Any]) -> dg.AssetCheckResult:
    """The manifests, absent-class and quarantine tables match docs/manifest.md exactly."""
    from neurosam3d.data.schema import (
        ABSENT_SCHEMA,
        MANIFEST_SCHEMA,
        QUARANTINE_SCHEMA,
        SchemaError,
        check_schema,
    )

    expected = [(path, MANIFEST_SCHEMA) for path in tables["manifests"]]
    expected += [(tables["absent"], ABSENT_SCHEMA), (tables["quarantine"], QUARANTINE_SCHEMA)]
    problems: list[str] = []
    for path, schema in expected:
        if not path.exists():
            problems.append(f"{path.name} is missing")
            continue
        try:
            check_schema(pq.read_table(path), schema, path.name)
        except SchemaError as err:
            problems.append(str(err))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="manifest_schema",
        passed=bool(tables["manifests"]) and not problems,
        metadata={"tables": [p.name for p, _ in expected], "problems": problems},
    )


def quarantine_growth(
    context: dg.AssetExecutionContext, partition: str, rows: int, project: ProjectResource
) -> dg.AssetCheckResult:
    """Warn when more inputs are quarantined than at the previous materialisation (+ allowance)."""
    allowed = int(project.params()["checks"]["max_quarantine_growth"])
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("dataset_manifest"), asset_partitions=[partition]
        ),
        limit=5,
    ).records
    previous = [
        r.asset_materialization.metadata["quarantine_rows"].value
        for r in records
        if r.run_id != context.run_id
        and r.asset_materialization is not None
        and "quarantine_rows" in r.asset_materialization.metadata
    ]
    before = int(previous[0]) if previous else None
    passed = before is None or rows <= before + allowed
    return dg.AssetCheckResult(
        asset_key="dataset_manifest",
        check_name="quarantine_growth",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantine_rows": rows, "previous": before, "allowed_growth": allowed},
    )


@dg.asset_check(
    asset="registered_model",
    blocking=True,
    description="The @challenger carries the evaluation scores the promotion gate compares "
    "(evaluation manifest, click count, a finite mean Dice); blocks promotion otherwise.",
)
def challenger_scored(project: ProjectResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
    import math

    from neurosam3d.registry import tags
    from neurosam3d.registry.promotion import version_by_alias

    name = project.params()["register"]["name"]
    challenger = version_by_alias(mlflow.client(), name, tags.CHALLENGER)
    if challenger is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": f"{name} has no challenger"})
    try:
        scores = tags.scores_from_tags(challenger.tags, f"{name} v{challenger.version}")
    except ValueError as err:
        return dg.AssetCheckResult(passed=False, metadata={"problem": str(err)})
    return dg.AssetCheckResult(
        passed=not math.isnan(scores.mean),
        metadata={
            "challenger": str(challenger.version),
            "eval_manifest_sha256": scores.manifest_sha256,
            "clicks": scores.clicks,
            "mean_dice": scores.mean,
        },
    )

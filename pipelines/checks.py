"""Asset checks: label trees on their images' grids, manifest schema, quarantine growth, and the
blocking check that guards promotion. Each check reads outputs and reports; the rules themselves
(schema, gate) live in the library."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from pipelines.resources import MlflowResource, ProjectResource


def masks_on_image_grid(folder: Path) -> dg.AssetCheckResult:
    """Every mask in the manifests has its image's shape and affine (NIfTI headers only)."""
    import nibabel as nib
    import numpy as np

    manifest = _manifest_file(folder)
    frame = pq.read_table(manifest, columns=["image_path", "mask_path"]).to_pandas()
    root = folder
    bad: list[str] = []
    headers: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
    for image_path, mask_path in frame.itertuples(index=False):
        if image_path not in headers:
            image = nib.load(root / image_path)
            headers[image_path] = (image.shape[:3], image.affine)
        shape, affine = headers[image_path]
        mask = nib.load(root / mask_path)
        if mask.shape != shape or not np.allclose(mask.affine, affine, atol=1e-5):
            bad.append(mask_path)
    return dg.AssetCheckResult(
        asset_key="label_tree",
        check_name="masks_on_image_grid",
        passed=not bad,
        metadata={"masks": len(frame), "off_grid": len(bad), "examples": bad[:10]},
    )


def _manifest_file(folder: Path) -> Path:
    combined = folder / "manifest.parquet"
    if combined.exists():
        return combined
    found = sorted(folder.glob("manifest_*.parquet"))
    if not found:
        raise dg.Failure(f"no manifest in {folder}")
    return found[0]


def manifest_schema(asset: str, folder: Path) -> dg.AssetCheckResult:
    """Every manifest and the quarantine table match docs/manifest.md exactly."""
    from neurosam3d.data.schema import (
        MANIFEST_SCHEMA,
        QUARANTINE_SCHEMA,
        SchemaError,
        check_schema,
    )

    problems: list[str] = []
    tables = sorted(folder.glob("manifest*.parquet"))
    expected = [(path, MANIFEST_SCHEMA) for path in tables]
    if (folder / "quarantine.parquet").exists():
        expected.append((folder / "quarantine.parquet", QUARANTINE_SCHEMA))
    for path, schema in expected:
        try:
            check_schema(pq.read_table(path), schema, path.name)
        except SchemaError as err:
            problems.append(str(err))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="manifest_schema",
        passed=bool(tables) and not problems,
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
    description="The new version carries evaluation scores comparable with the champion's "
    "(same evaluation manifest and click count); blocks promotion otherwise.",
)
def comparable_with_champion(
    project: ProjectResource, mlflow: MlflowResource
) -> dg.AssetCheckResult:
    from neurosam3d.registry import tags
    from neurosam3d.registry.promotion import version_by_alias

    name = project.params()["register"]["model_name"]
    client = mlflow.client()
    challenger = version_by_alias(client, name, tags.CHALLENGER)
    champion = version_by_alias(client, name, tags.CHAMPION)
    if challenger is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": f"{name} has no challenger"})
    try:
        new = tags.scores_from_tags(challenger.tags, f"{name} v{challenger.version}")
        old = (
            tags.scores_from_tags(champion.tags, f"{name} v{champion.version}")
            if champion is not None
            else None
        )
    except ValueError as err:
        return dg.AssetCheckResult(passed=False, metadata={"problem": str(err)})
    comparable = old is None or (
        old.manifest_sha256 == new.manifest_sha256 and old.clicks == new.clicks
    )
    return dg.AssetCheckResult(
        passed=comparable,
        metadata={
            "challenger": str(challenger.version),
            "champion": str(champion.version) if champion is not None else "none",
            "eval_manifest_sha256": new.manifest_sha256,
            "clicks": new.clicks,
        },
    )

"""``evaluate``: run the interactive protocol over manifests and write every artifact.

Output folder layout (all files deterministic for the same model, manifests and seed):

* ``results.parquet``: one row per (model, dataset, case, class, click) (:mod:`.results`);
* ``tables/<name>.csv|md``: aggregates (:mod:`.tables`);
* ``dice_vs_clicks.png`` and ``overlays/<rank>_<dataset>_<case>_<class>.png`` for the worst
  targets by final Dice (:mod:`.plots`);
* ``predictions/<dataset>/<case>.nii.gz``: one multi-label prediction per case on the original
  grid (voxel values as in ``predictions/<dataset>/<case>.json``; where the final predictions
  of several classes overlap, the class with the highest probability wins), plus
  ``predictions/<dataset>/<case>/<class>.nii.gz`` binary masks when ``class_masks`` is set;
* ``summary.json``: mean Dice and NSD at 1/3/5/10 clicks, per-category Dice at 5 clicks (what the
  promotion gate compares), the manifest content hash and the protocol.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neurosam3d.data.schema import MANIFEST_SCHEMA, check_schema
from neurosam3d.evaluation.geometry import grid_for_image
from neurosam3d.evaluation.models import resolve_model
from neurosam3d.evaluation.plots import (
    OverlaySlice,
    overlay_slice,
    plot_dice_vs_clicks,
    plot_overlay,
)
from neurosam3d.evaluation.protocol import ProtocolConfig, TargetResult, run_target, target_seed
from neurosam3d.evaluation.results import read_results, results_table, write_results
from neurosam3d.evaluation.tables import per_target, report_clicks_from, write_tables
from neurosam3d.io.atomic import atomic_write_bytes
from neurosam3d.io.nifti import as_3d, load_nifti, make_image, save_nifti
from neurosam3d.io.paths import check_name, safe_join
from neurosam3d.training.intensity import normalise_intensity

logger = logging.getLogger(__name__)

#: Click count whose per-category Dice the promotion gate compares.
GATE_CLICKS = 5
_KEYS = ["dataset", "split", "case_id", "class_name"]
#: Manifest columns that become file or folder names of the outputs.
_NAME_COLUMNS = ("dataset", "case_id", "class_name")
#: Manifest columns holding paths relative to the data root.
_PATH_COLUMNS = ("image_path", "mask_path")


@dataclass(frozen=True)
class EvaluationReport:
    """Where :func:`evaluate` wrote its artifacts, and the summary it computed."""

    out_dir: Path
    results: Path
    tables: dict[str, Path]
    plot: Path
    overlays: list[Path]
    predictions: list[Path]
    summary_path: Path
    summary: dict


class ManifestError(ValueError):
    """A manifest that cannot be evaluated; the message names the file (and row)."""


def _check_rows(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Names that become output paths are safe names; data paths stay under the data root."""
    columns = table.select([*_NAME_COLUMNS, *_PATH_COLUMNS]).to_pydict()
    for index in range(table.num_rows):
        try:
            for column in _NAME_COLUMNS:
                check_name(columns[column][index], column)
            for column in _PATH_COLUMNS:
                try:
                    safe_join("<data root>", columns[column][index])
                except ValueError as exc:
                    raise ValueError(f"{column}: {exc}") from exc
        except ValueError as exc:
            raise ManifestError(f"{path}: row {index}: {exc}") from exc


def read_manifests(paths: list[str | os.PathLike[str]]) -> pd.DataFrame:
    """Concatenated manifests (schema-checked), sorted by (dataset, split, case, class), deduplicated.

    Raises :class:`ManifestError` naming the manifest (and row) that has the wrong schema, no
    rows, or a row whose ``dataset``, ``case_id`` or
    ``class_name`` is not a safe file name, or whose ``image_path``/``mask_path`` is absolute or
    leads outside the data root (:mod:`neurosam3d.io.paths`).
    """
    if not paths:
        raise ManifestError("no manifest given: pass at least one --manifest FILE")
    tables = []
    for path in paths:
        table = pq.read_table(path)
        try:
            check_schema(table, MANIFEST_SCHEMA, str(path))
        except ValueError as exc:
            raise ManifestError(str(exc)) from exc
        table = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
        _check_rows(table, path)
        tables.append(table)
    frame = pa.concat_tables(tables).to_pandas()
    if frame.empty:
        raise ManifestError(
            f"the manifests {[str(p) for p in paths]} hold no (case, class) rows to evaluate"
        )
    return frame.sort_values(_KEYS).drop_duplicates(_KEYS).reset_index(drop=True)


def default_data_root(manifest: str | os.PathLike[str]) -> Path:
    """The label-tree root of a manifest written by ``neurosam3d prepare``.

    ``prepare --out ROOT`` writes ``ROOT/manifest.parquet`` and ``ROOT/manifests/<name>.parquet``:
    the manifest's folder, or its parent for a manifest inside a ``manifests`` folder.
    """
    folder = Path(manifest).resolve().parent
    return folder.parent if folder.name == "manifests" else folder


def manifest_sha256(rows: pd.DataFrame) -> str:
    """Content hash of the evaluated targets: their keys and mask hashes, in sorted order."""
    digest = hashlib.sha256()
    for row in rows[[*_KEYS, "mask_sha256"]].itertuples(index=False):
        digest.update(("\x00".join(row) + "\n").encode())
    return digest.hexdigest()


def _seen_pairs(training_manifest: str | os.PathLike[str] | None) -> set[tuple[str, str]]:
    if training_manifest is None:
        logger.warning("no training manifest given: every (dataset, class) is reported as unseen")
        return set()
    from neurosam3d.taxonomy import seen_pairs

    return seen_pairs(training_manifest)


def _load_3d(path: Path) -> nib.Nifti1Image:
    """A manifest's image or mask as 3D (a trailing singleton axis dropped), else a clear error."""
    hint = "manifest paths must name 3D volumes (prepare writes one folder per channel)"
    return as_3d(load_nifti(path), path, hint=hint)


def _default_model_name(model: object) -> str:
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    text = str(model)
    return text if text.startswith("models:/") else Path(text).stem


def evaluate(
    model_or_checkpoint: torch.nn.Module | str | os.PathLike[str],
    manifests: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    clicks: int = 10,
    seed: int = 0,
    click_rule: str = "random_error",
    nsd_tolerance_mm: float = 2.0,
    training_manifest: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    architecture: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
    orientation: str | None = None,
    spacing_mm: float | None = None,
    worst_overlays: int = 4,
    class_masks: bool = False,
    device: str = "cpu",
) -> EvaluationReport:
    """Evaluate a model interactively on every (case, class) row of ``manifests``.

    ``model_or_checkpoint``: an ``nn.Module``, a checkpoint path, or ``models:/NAME@ALIAS``
    (``architecture`` names the configuration when a checkpoint does not reveal it);
    ``data_root``: the label-tree root the manifest paths are relative to (default:
    :func:`default_data_root` of the first manifest); ``training_manifest``: the model's
    training manifest, which decides seen/unseen (a (dataset, class) is seen when it has rows of
    the training split ``Tr`` there, :func:`neurosam3d.taxonomy.seen_pairs`; the combined
    manifest of ``prepare`` may be passed as is); ``model_name``: the ``model`` column of the results (default: checkpoint stem,
    model URI or class name). See :class:`ProtocolConfig` for the protocol parameters.
    """
    config = ProtocolConfig(
        clicks=clicks,
        click_rule=click_rule,
        seed=seed,
        nsd_tolerance_mm=nsd_tolerance_mm,
        orientation=orientation,
        spacing_mm=spacing_mm,
    )
    out_dir = Path(out_dir)
    label = model_name or _default_model_name(model_or_checkpoint)
    rows = read_manifests(manifests)  # checked before the model loads: bad input fails fast
    model = resolve_model(model_or_checkpoint, name=architecture, device=device)
    root = Path(data_root) if data_root is not None else default_data_root(manifests[0])
    seen = _seen_pairs(training_manifest)
    logger.info(
        "evaluating %s on %d targets, %d clicks (%s, seed %d)",
        label,
        len(rows),
        clicks,
        click_rule,
        seed,
    )

    records: list[dict] = []
    views: list[tuple[float, str, OverlaySlice]] = []
    predictions: list[Path] = []
    with torch.inference_mode():
        for (dataset, split, case_id), case_rows in rows.groupby(
            ["dataset", "split", "case_id"], sort=True
        ):
            image = _load_3d(safe_join(root, case_rows["image_path"].iloc[0]))
            volume = np.asarray(image.dataobj)
            grid = grid_for_image(image, orientation, spacing_mm)
            normalised = normalise_intensity(volume, case_rows["modality"].iloc[0])
            case = _CasePrediction(image, safe_join(out_dir, "predictions", dataset), case_id)
            for row in case_rows.itertuples(index=False):
                reference = np.asarray(_load_3d(safe_join(root, row.mask_path)).dataobj) > 0
                generator = torch.Generator().manual_seed(
                    target_seed(seed, dataset, split, case_id, row.class_name)
                )
                result = run_target(model, normalised, reference, grid, config, generator)
                identity = {
                    "model": label,
                    "dataset": dataset,
                    "split": split,
                    "case_id": case_id,
                    "class_name": row.class_name,
                    "modality": row.modality,
                    "category": row.category,
                    "seen": (dataset, row.class_name) in seen,
                }
                records.extend(_rows(identity, result, config))
                final = result.final.scores.dice
                logger.info(
                    "%s/%s/%s: Dice %.3f after %d clicks",
                    dataset,
                    case_id,
                    row.class_name,
                    final,
                    clicks,
                )
                title = (
                    f"{label} | {dataset}/{case_id}/{row.class_name} | Dice {final:.3f} @ {clicks}"
                )
                view = overlay_slice(title, volume, reference, result.prediction, image.affine)
                views.append((final, f"{dataset}_{case_id}_{row.class_name}", view))
                views = sorted(views, key=lambda v: (v[0], v[1]))[:worst_overlays]
                case.add(row.class_name, result, class_masks)
            predictions.append(case.write())

    results_path = write_results(results_table(records), out_dir / "results.parquet")
    results = read_results(results_path)
    tables = write_tables(results, out_dir / "tables")
    plot = plot_dice_vs_clicks(results, out_dir / "dice_vs_clicks.png")
    overlays = [
        plot_overlay(view, safe_join(out_dir, "overlays", f"{rank:02d}_{key}.png"))
        for rank, (_, key, view) in enumerate(views, start=1)
    ]
    summary = _summary(results, label, config, manifest_sha256(rows))
    summary_path = out_dir / "summary.json"
    atomic_write_bytes(
        summary_path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
    )
    logger.info("evaluation written to %s", out_dir)
    return EvaluationReport(
        out_dir, results_path, tables, plot, overlays, predictions, summary_path, summary
    )


def _rows(identity: dict, result: TargetResult, config: ProtocolConfig) -> list[dict]:
    """Results rows (:data:`RESULTS_SCHEMA`) of one target, one per click."""
    return [
        {
            **identity,
            "click": step.click,
            "dice": step.scores.dice,
            "nsd": step.scores.nsd,
            "pred_voxels": step.scores.pred_voxels,
            "ref_voxels": step.scores.ref_voxels,
            "true_positive_voxels": step.scores.true_positives,
            "windows": step.windows,
            "click_rule": config.click_rule,
            "seed": config.seed,
            "nsd_tolerance_mm": config.nsd_tolerance_mm,
        }
        for step in result.clicks
    ]


class _CasePrediction:
    """The multi-label prediction of one case, built class by class (original grid).

    Voxel values are 1, 2, ... in the order classes are added; where final predictions overlap,
    the class with the highest probability wins. ``write`` saves ``<case>.nii.gz`` and the
    value -> class legend ``<case>.json`` in ``folder``; ``add(..., class_mask=True)`` also
    saves ``<case>/<class>.nii.gz``.
    """

    def __init__(self, image: nib.Nifti1Image, folder: Path, case_id: str) -> None:
        self.image = image
        self.folder = folder
        self.case_id = case_id
        self.labels = np.zeros(image.shape[:3], np.uint16)
        self.best = np.zeros(image.shape[:3], np.float32)
        self.legend: dict[int, str] = {}

    def add(self, class_name: str, result: TargetResult, class_mask: bool) -> None:
        value = len(self.legend) + 1
        wins = result.prediction & (result.probabilities > self.best)
        self.labels[wins] = value
        self.best[wins] = result.probabilities[wins]
        self.legend[value] = class_name
        if class_mask:
            mask = make_image(
                result.prediction.astype(np.uint8), self.image.affine, like=self.image
            )
            save_nifti(mask, safe_join(self.folder, self.case_id, f"{class_name}.nii.gz"))

    def write(self) -> Path:
        path = safe_join(self.folder, f"{self.case_id}.nii.gz")
        save_nifti(make_image(self.labels, self.image.affine, like=self.image), path)
        legend = json.dumps(self.legend, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(path.with_name(f"{self.case_id}.json"), legend.encode())
        return path


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _summary(results: pd.DataFrame, model: str, config: ProtocolConfig, manifest_hash: str) -> dict:
    """The promotion gate's input: mean scores at the reported clicks and per category at 5."""
    targets = per_target(results)
    reported = report_clicks_from(targets)
    gate_clicks = GATE_CLICKS if GATE_CLICKS in reported else reported[-1]
    categories = targets.groupby("category", sort=True)[f"dice_{gate_clicks}"].mean()
    return {
        "model": model,
        "manifest_sha256": manifest_hash,
        "targets": len(targets),
        "protocol": asdict(config),
        "mean_dice": {str(k): _nan_to_none(targets[f"dice_{k}"].mean()) for k in reported},
        "mean_nsd": {str(k): _nan_to_none(targets[f"nsd_{k}"].mean()) for k in reported},
        "dice_auc": _nan_to_none(targets["dice_auc"].mean()),
        "gate_clicks": gate_clicks,
        "category_dice": {str(c): _nan_to_none(v) for c, v in categories.items()},
    }

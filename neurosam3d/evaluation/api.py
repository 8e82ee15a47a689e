"""``evaluate``: run an interactive protocol over manifests and write every artifact.

A run evaluates the cases of its shard (``shard=(I, N)``: every N-th case of the sorted case list,
from the I-th; all targets of a case stay together, so its image is read once and its multi-label
prediction written whole) and writes, per case, as soon as the case is done:

* ``parts/<dataset>/<split>/<case>.parquet``: the case's results rows (:mod:`.results`), and
  ``<case>.overlays.npz`` beside it (the overlay slice of each target);
* ``predictions/<dataset>/<case>.nii.gz``: one multi-label prediction per case on the original
  grid (voxel values as in ``predictions/<dataset>/<case>.json``; where the final predictions
  of several classes overlap, the class with the highest probability wins), plus
  ``predictions/<dataset>/<case>/<class>.nii.gz`` binary masks when ``class_masks`` is set.

``run.json`` records what the parts belong to (model and weights hash, protocol, manifest hash,
target count). With ``resume`` cases whose part exists are skipped, so a killed run loses at most
the case in flight, and a folder of another evaluation is refused; without it such a folder's
parts are removed and the run starts over. :func:`summarise` rebuilds from
the parts of all shards (``neurosam3d evaluate --summarise DIR``; an unsharded run does it
itself):

* ``results.parquet``: one row per (model, dataset, case, class, click);
* ``tables/<name>.csv|md``: aggregates (:mod:`.tables`);
* ``dice_vs_clicks.png`` and ``overlays/<rank>_<dataset>_<case>_<class>.png`` for the worst
  targets by final Dice (:mod:`.plots`);
* ``summary.json``: mean Dice and NSD at 1/3/5/10 clicks, per-category Dice at 5 clicks (what the
  promotion gate compares), the manifest content hash and the protocol.

All files are deterministic for the same model, manifests and seed, whatever the sharding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from neurosam3d.data.schema import MANIFEST_SCHEMA, check_schema
from neurosam3d.evaluation.models import (
    checkpoint_path,
    model_preprocessing,
    resolve_amp,
    resolve_device,
    resolve_model,
    trained_pairs_from_checkpoint,
)
from neurosam3d.evaluation.plots import (
    OverlaySlice,
    overlay_slice,
    plot_dice_vs_clicks,
    plot_overlay,
)
from neurosam3d.evaluation.protocol import (
    FULL,
    SAM_MED3D,
    SLICE2D,
    ProtocolConfig,
    TargetResult,
    run_full,
    target_seed,
)
from neurosam3d.evaluation.results import (
    RESULTS_SCHEMA,
    read_results,
    results_table,
    write_results,
)
from neurosam3d.evaluation.tables import per_target, report_clicks_from, write_tables
from neurosam3d.io.atomic import atomic_write_bytes
from neurosam3d.io.digest import file_sha256
from neurosam3d.io.locks import exclusive_or_refuse
from neurosam3d.io.nifti import as_3d, load_nifti, make_image, save_nifti
from neurosam3d.io.paths import check_name, safe_join
from neurosam3d.transforms import Preprocessing
from neurosam3d.transforms.geometry import grid_for_image
from neurosam3d.transforms.intensity import apply_intensity
from neurosam3d.transforms.volume import NormalisedVolume
from neurosam3d.windows.growth import DEFAULT_MAX_WINDOWS

logger = logging.getLogger(__name__)

#: Click count whose per-category Dice the promotion gate compares.
GATE_CLICKS = 5
_KEYS = ["dataset", "split", "case_id", "class_name"]
_CASE_KEYS = ["dataset", "split", "case_id"]
#: Manifest columns that become file or folder names of the outputs.
_NAME_COLUMNS = ("dataset", "case_id", "class_name")
#: Manifest columns holding paths relative to the data root.
_PATH_COLUMNS = ("image_path", "mask_path")
RUN_FILE = "run.json"
PARTS_DIR = "parts"


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


def _load_3d(path: Path) -> nib.Nifti1Image:
    """A manifest's image or mask as 3D (a trailing singleton axis dropped), else a clear error."""
    hint = "manifest paths must name 3D volumes (prepare writes one folder per channel)"
    return as_3d(load_nifti(path), path, hint=hint)


#: Mask and image affines equal within this tolerance (mm) are the same grid.
GRID_ATOL_MM = 1e-3


def load_reference(path: Path, row: Any, image: nib.Nifti1Image) -> np.ndarray:
    """The reference mask of one manifest row as a bool array, checked where it is scored.

    Refused with :class:`ManifestError` (naming the file, the row and the problem): a file whose
    SHA-256 is not the manifest's ``mask_sha256`` (the tree changed after the manifest, or a
    different file), and a mask not on exactly its image's grid (shape, affine within
    :data:`GRID_ATOL_MM`): scoring it would compare the wrong voxels.
    """
    where = f"manifest row {row.dataset}/{row.split}/{row.case_id}/{row.class_name}"
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the mask of {where} ({exc.strerror})") from exc
    if digest != row.mask_sha256:
        raise ManifestError(
            f"{path}: its SHA-256 {digest[:16]}... is not the mask_sha256 "
            f"{str(row.mask_sha256)[:16]}... of {where}: the label tree changed after the "
            "manifest was written (rerun neurosam3d prepare) or the path names another file"
        )
    mask = _load_3d(path)
    shape, image_shape = tuple(mask.shape), tuple(image.shape[:3])
    if shape != image_shape:
        raise ManifestError(
            f"{path}: mask shape {shape} differs from its image's {image_shape} ({where})"
        )
    offset = float(np.abs(mask.affine - image.affine).max())
    if offset > GRID_ATOL_MM:
        raise ManifestError(
            f"{path}: mask affine differs from its image's by up to {offset:.3g} (mm or "
            f"direction x spacing) ({where}): masks must lie on exactly the image grid"
        )
    return np.asarray(mask.dataobj) > 0


def _default_model_name(model: object) -> str:
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    text = str(model)
    return text if text.startswith("models:/") else Path(text).stem


class EvaluationStateError(ValueError):
    """An output folder that holds another evaluation, or parts that cannot be summarised."""


def shard_cases(cases: list[tuple[str, str, str]], shard: tuple[int, int]) -> list[int]:
    """Positions of the cases (sorted keys) that shard ``(I, N)`` evaluates: every N-th from I-1."""
    index, count = shard
    return list(range(index - 1, len(cases), count))


def _seen(
    training_manifest: str | os.PathLike[str] | None, checkpoint: Path | None
) -> tuple[set[tuple[str, str]], str]:
    """The model's seen (dataset, class) pairs and where they came from."""
    if training_manifest is not None:
        from neurosam3d.taxonomy import seen_pairs

        return seen_pairs(training_manifest), f"training manifest {training_manifest}"
    if checkpoint is not None:
        recorded = trained_pairs_from_checkpoint(checkpoint)
        if recorded is not None:
            return recorded, f"checkpoint {checkpoint.name}"
    logger.warning(
        "the model records no training pairs and no --training-manifest was given: every "
        "(dataset, class) is reported as unseen"
    )
    return set(), "none"


def _part_paths(out_dir: Path, dataset: str, split: str, case_id: str) -> tuple[Path, Path]:
    folder = safe_join(out_dir, PARTS_DIR, dataset, split)
    return safe_join(folder, f"{case_id}.parquet"), safe_join(folder, f"{case_id}.overlays.npz")


def _check_run_record(out_dir: Path, record: dict, resume: bool) -> None:
    """Write ``run.json``, or check the one there: the same evaluation, or (not resuming) replace it.

    A folder holding another evaluation (other model weights, protocol, manifests...) is refused
    with ``resume``; without it, its parts and ``run.json`` are removed and the run starts over.
    """
    path = out_dir / RUN_FILE
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    if path.is_file():
        existing = json.loads(path.read_text())
        if existing == record:
            return
        changed = sorted(k for k in {*existing, *record} if existing.get(k) != record.get(k))
        if resume:
            raise EvaluationStateError(
                f"{path}: the folder holds an evaluation with other settings ({', '.join(changed)}); "
                f"cannot resume it: use another --out, or run without --resume to start over"
            )
        logger.warning(
            "%s holds an evaluation with other settings (%s): starting over", out_dir, changed
        )
        shutil.rmtree(out_dir / PARTS_DIR, ignore_errors=True)
        path.unlink()
    atomic_write_bytes(path, text.encode())


def model_sha256(model: torch.nn.Module, checkpoint: Path | None) -> str:
    """Fingerprint of the evaluated weights: the checkpoint file's SHA-256, or the state dict's."""
    if checkpoint is not None:
        return file_sha256(checkpoint)
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def evaluate(
    model_or_checkpoint: torch.nn.Module | str | os.PathLike[str],
    manifests: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    clicks: int = 10,
    seed: int = 0,
    click_rule: str = "random_error",
    nsd_tolerance_mm: float | None = None,
    training_manifest: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    architecture: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
    orientation: str | None = None,
    spacing_mm: float | tuple[float, float, float] | str | None = None,
    ct_window: tuple[float, float] | None = None,
    preprocessing: Preprocessing | None = None,
    worst_overlays: int = 4,
    class_masks: bool = False,
    device: str = "auto",
    amp: str = "auto",
    protocol: str = FULL,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    shard: tuple[int, int] = (1, 1),
    resume: bool = False,
    workers: int = 1,
) -> EvaluationReport | None:
    """Evaluate a model interactively on every (case, class) row of ``manifests``.

    ``model_or_checkpoint``: an ``nn.Module``, a checkpoint path, or ``models:/NAME@ALIAS``
    (``architecture`` names the configuration when a checkpoint does not reveal it);
    ``data_root``: the label-tree root the manifest paths are relative to (default:
    :func:`default_data_root` of the first manifest); seen/unseen: the (dataset, class) pairs the
    checkpoint records from its training (``neurosam3d train`` writes them), unless
    ``training_manifest`` is given (a (dataset, class) is then seen when it has rows of the
    training split ``Tr`` there, :func:`neurosam3d.taxonomy.seen_pairs`; the combined manifest of
    ``prepare`` may be passed as is); ``model_name``: the ``model`` column of the results
    (default: checkpoint stem, model URI or class name); ``device``: ``auto`` (a GPU when
    present), ``cpu``, ``cuda``...; ``amp``: ``auto`` (bf16 on a GPU), ``bf16`` or ``none``;
    ``shard``: ``(I, N)``, the I-th of N shards (module docstring); ``resume``: skip cases already
    written; ``workers``: targets of a case run in parallel (threads). See :class:`ProtocolConfig`
    for the protocol parameters.

    Inputs are prepared by the model's :class:`~neurosam3d.transforms.Preprocessing` record
    (``preprocessing``, else the checkpoint's, else the default of its kind:
    :func:`neurosam3d.model.read_preprocessing`; an ``nn.Module`` without one gets
    :meth:`Preprocessing.native`); ``orientation`` (``"native"``: the stored axes),
    ``spacing_mm`` (``"native"``: the native grid) and ``ct_window`` override its fields. The
    effective record, where it came from and the overridden fields are written to ``run.json``
    and ``summary.json`` (``preprocessing``). The ``sam-med3d`` protocol is upstream's own
    preprocessing and takes none of them.

    Returns the report of :func:`summarise` for an unsharded run (``N == 1``), else ``None``
    (summarise the folder once every shard is done).
    """
    config = ProtocolConfig(
        clicks=clicks,
        click_rule=click_rule,
        seed=seed,
        nsd_tolerance_mm=nsd_tolerance_mm,
        protocol=protocol,
        max_windows=max_windows,
    )
    if protocol == SAM_MED3D and (
        orientation is not None or spacing_mm is not None or ct_window is not None
    ):
        raise ValueError(
            "the sam-med3d protocol fixes its own preprocessing (canonical RAS, 1.5 mm, per-crop "
            "z-score): do not give orientation/spacing_mm/ct_window with it"
        )
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    label = model_name or _default_model_name(model_or_checkpoint)
    rows = read_manifests(manifests)  # checked before the model loads: bad input fails fast
    device = resolve_device(device)
    amp_dtype = resolve_amp(amp, device)
    checkpoint = (
        None
        if isinstance(model_or_checkpoint, torch.nn.Module)
        else checkpoint_path(model_or_checkpoint)
    )
    model = resolve_model(
        model_or_checkpoint if checkpoint is None else checkpoint, name=architecture, device=device
    )
    from neurosam3d.evaluation.slice2d import check_protocol_model

    check_protocol_model(model, config.protocol, str(checkpoint or label))
    base, base_source = (
        (preprocessing, "given")
        if preprocessing is not None
        else model_preprocessing(model, checkpoint)
    )
    if protocol == SAM_MED3D:
        effective, overridden = Preprocessing.upstream(int(model.img_size)), []
        base_source = "the sam-med3d protocol"
    else:
        effective, overridden = base.overridden(
            orientation=orientation, spacing_mm=spacing_mm, ct_window=ct_window
        )
        # the protocol names the grid options given, not the model's record (a property of the
        # model): two models evaluated the same way share the protocol's fingerprint
        config = replace(
            config,
            orientation=None if orientation is None else str(orientation).upper(),
            spacing_mm=_spacing_value(spacing_mm),
        )
    logger.info(
        "preprocessing: %s (%s%s)",
        effective.describe(),
        base_source,
        f"; overridden: {', '.join(overridden)}" if overridden else "",
    )
    root = Path(data_root) if data_root is not None else default_data_root(manifests[0])
    seen, seen_from = _seen(training_manifest, checkpoint)
    cases = [tuple(k) for k in rows[_CASE_KEYS].drop_duplicates().itertuples(index=False)]
    record = {
        "model": label,
        "model_sha256": model_sha256(model, checkpoint),
        "protocol": asdict(config),
        "preprocessing": {
            "record": effective.to_dict(),
            "source": base_source,
            "overridden": overridden,
        },
        "manifest_sha256": manifest_sha256(rows),
        "targets": len(rows),
        "cases": len(cases),
        "amp": None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        "worst_overlays": worst_overlays,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_run_record(out_dir, record, resume)
    mine = shard_cases(cases, shard)
    logger.info(
        "evaluating %s (%s protocol) on %d of %d cases (shard %d/%d), %d clicks (%s, seed %d), "
        "%s, seen/unseen from %s",
        label,
        config.protocol,
        len(mine),
        len(cases),
        *shard,
        clicks,
        click_rule,
        seed,
        device,
        seen_from,
    )
    by_case = rows.groupby(_CASE_KEYS, sort=True)
    lock = out_dir / f".lock-shard-{shard[0]}-of-{shard[1]}"
    refusal = partial(
        EvaluationStateError, f"{lock}: another evaluation is writing this shard of {out_dir}"
    )
    with exclusive_or_refuse(lock, refusal), torch.inference_mode():
        for done, position in enumerate(mine, start=1):
            dataset, split, case_id = cases[position]
            part, views = _part_paths(out_dir, dataset, split, case_id)
            if resume and part.is_file():
                logger.info("%s/%s: already written, skipped (--resume)", dataset, case_id)
                continue
            case_rows = by_case.get_group((dataset, split, case_id))
            context = _CaseContext(
                model, config, effective, amp_dtype, label, seen, class_masks, out_dir
            )
            records, overlays = context.run(root, case_rows, workers)
            _write_views(views, overlays)
            write_results(results_table(records), part)
            logger.info(
                "case %d/%d of this shard written: %s/%s", done, len(mine), dataset, case_id
            )
    if shard[1] > 1:
        logger.info(
            "shard %d/%d done; when every shard is done: neurosam3d evaluate --summarise %s",
            *shard,
            out_dir,
        )
        return None
    return summarise(out_dir)


@dataclass(eq=False)
class _CaseContext:
    """Everything one case's targets share: the model, protocol, identity and output folder."""

    model: torch.nn.Module
    config: ProtocolConfig
    preprocessing: Preprocessing
    amp_dtype: torch.dtype | None
    label: str
    seen: set[tuple[str, str]]
    class_masks: bool
    out_dir: Path

    def run(
        self, root: Path, case_rows: pd.DataFrame, workers: int
    ) -> tuple[list[dict], list[OverlaySlice]]:
        """Results rows and overlay slices of one case; writes its multi-label prediction."""
        first = case_rows.iloc[0]
        dataset, split, case_id = first["dataset"], first["split"], first["case_id"]
        image = _load_3d(safe_join(root, first["image_path"]))
        config = self.config
        if config.protocol == SAM_MED3D:
            from neurosam3d.evaluation.sammed3d import run_sam_med3d, working_image

            work = working_image(image)
            display = np.asarray(image.dataobj, dtype=np.float32)
            spacing = grid_for_image(image).original_spacing

            def run_one(reference: np.ndarray, generator: torch.Generator) -> TargetResult:
                return run_sam_med3d(
                    self.model,
                    work,
                    reference,
                    spacing,
                    config,
                    generator,
                    amp_dtype=self.amp_dtype,
                )

        elif config.protocol == SLICE2D:
            from neurosam3d.evaluation.slice2d import case_runner

            display, run_one = case_runner(self.model, image, config, self.amp_dtype)
        else:
            prepared = self.preprocessing.prepare(
                np.asarray(image.dataobj), first["modality"], image.affine, lazy=True
            )
            display = prepared.volume

            def run_one(reference: np.ndarray, generator: torch.Generator) -> TargetResult:
                return run_full(
                    self.model,
                    prepared.volume,
                    reference,
                    prepared.grid,
                    config,
                    generator,
                    amp_dtype=self.amp_dtype,
                    background=prepared.background,
                    crop_transform=prepared.crop_transform,
                )

        def target(row) -> tuple[np.ndarray, TargetResult]:
            reference = load_reference(safe_join(root, row.mask_path), row, image)
            generator = torch.Generator().manual_seed(
                target_seed(config.seed, dataset, split, case_id, row.class_name)
            )
            return reference, run_one(reference, generator)

        case = _CasePrediction(
            image, safe_join(self.out_dir, "predictions", dataset), case_id, len(case_rows)
        )
        records: list[dict] = []
        views: list[OverlaySlice] = []
        items = list(case_rows.itertuples(index=False))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = pool.map(target, items) if workers > 1 else map(target, items)
            for row, (reference, result) in zip(items, outcomes, strict=True):
                identity = {
                    "model": self.label,
                    "dataset": dataset,
                    "split": split,
                    "case_id": case_id,
                    "class_name": row.class_name,
                    "modality": row.modality,
                    "category": row.category,
                    "seen": (dataset, row.class_name) in self.seen,
                }
                records.extend(_rows(identity, result, config))
                final = result.final.scores.dice
                logger.info(
                    "%s/%s/%s: Dice %.3f after %d clicks (%d windows, %d seeded clicks)",
                    dataset,
                    case_id,
                    row.class_name,
                    final,
                    config.clicks,
                    result.final.windows_predicted,
                    result.final.seeded_clicks,
                )
                title = (
                    f"{self.label} | {dataset}/{case_id}/{row.class_name} | Dice {final:.3f} "
                    f"@ {config.clicks}"
                )
                prediction = result.full_prediction(reference.shape)
                views.append(_overlay(title, display, reference, prediction, image.affine))
                del prediction
                case.add(row.class_name, result, self.class_masks)
        case.write()
        return records, views


def normalised_image(
    image: nib.Nifti1Image,
    modality: str,
    model: torch.nn.Module,
    checkpoint: str | os.PathLike[str] | None = None,
) -> NormalisedVolume | np.ndarray:
    """The image as the ``full`` protocol reads it: the model's preprocessing record
    (:func:`~.models.model_preprocessing`) applied with ``lazy=True``, so z-score models get a
    :class:`~neurosam3d.transforms.volume.NormalisedVolume` (the stored voxels, normalised per
    crop: no float copy of the volume); other rules a float32 array."""
    record, _ = model_preprocessing(model, checkpoint)
    return record.prepare(np.asarray(image.dataobj), modality, image.affine, lazy=True).volume


def _overlay(title, display, reference, prediction, affine) -> OverlaySlice:
    """:func:`overlay_slice`; of a :class:`NormalisedVolume`, only the slice is normalised."""
    if not isinstance(display, NormalisedVolume):
        return overlay_slice(title, display, reference, prediction, affine)
    view = overlay_slice(title, display.stored, reference, prediction, affine)
    return dataclasses.replace(view, image=apply_intensity(view.image, display.stats))


def _write_views(path: Path, views: list[OverlaySlice]) -> None:
    """The overlay slices of one case as an ``.npz`` (no pickles)."""
    arrays: dict[str, np.ndarray] = {"titles": np.array([v.title for v in views], dtype=np.str_)}
    for index, view in enumerate(views):
        arrays[f"image_{index}"] = view.image
        arrays[f"reference_{index}"] = view.reference
        arrays[f"prediction_{index}"] = view.prediction
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _read_views(path: Path) -> list[OverlaySlice]:
    with np.load(path, allow_pickle=False) as data:
        titles = [str(t) for t in data["titles"]]
        return [
            OverlaySlice(t, data[f"image_{i}"], data[f"reference_{i}"], data[f"prediction_{i}"])
            for i, t in enumerate(titles)
        ]


def summarise(out_dir: str | os.PathLike[str]) -> EvaluationReport:
    """Rebuild results, tables, plots and summary from the parts in ``out_dir`` (every shard).

    Raises :class:`EvaluationStateError` when ``out_dir`` holds no ``run.json`` or when parts of
    some cases are missing (naming how many; run the missing shards, with ``--resume``).
    """
    out_dir = Path(out_dir)
    run_path = out_dir / RUN_FILE
    if not run_path.is_file():
        raise EvaluationStateError(f"{out_dir}: no {RUN_FILE}, not an evaluation output folder")
    record = json.loads(run_path.read_text())
    parts = sorted((out_dir / PARTS_DIR).glob("*/*/*.parquet"))
    if len(parts) != record["cases"]:
        raise EvaluationStateError(
            f"{out_dir}: parts of {len(parts)} of {record['cases']} cases are written; run the "
            f"missing shards (with --resume) before summarising"
        )
    tables = [pq.read_table(p, schema=RESULTS_SCHEMA) for p in parts]
    combined = pa.concat_tables(tables).sort_by(
        [(k, "ascending") for k in ("model", "dataset", "split", "case_id", "class_name", "click")]
    )
    results_path = write_results(combined, out_dir / "results.parquet")
    results = read_results(results_path)
    targets = results.drop_duplicates(_KEYS).shape[0]
    if targets != record["targets"]:
        raise EvaluationStateError(
            f"{out_dir}: the parts hold {targets} of {record['targets']} targets"
        )
    written = write_tables(results, out_dir / "tables")
    plot = plot_dice_vs_clicks(results, out_dir / "dice_vs_clicks.png")
    final = per_target(results)
    last = report_clicks_from(final)[-1]
    ranked: list[tuple[float, str, Path, int]] = []
    for part in parts:
        dataset, split, case_id = part.parent.parent.name, part.parent.name, part.stem
        frame = final[
            (final["dataset"] == dataset)
            & (final["split"] == split)
            & (final["case_id"] == case_id)
        ]
        for index, row in enumerate(frame.sort_values("class_name").itertuples(index=False)):
            ranked.append(
                (
                    float(getattr(row, f"dice_{last}")),
                    f"{dataset}_{case_id}_{row.class_name}",
                    part.with_name(f"{case_id}.overlays.npz"),
                    index,
                )
            )
    ranked.sort(key=lambda r: (r[0], r[1]))
    overlays = []
    for old in sorted((out_dir / "overlays").glob("*.png")):
        old.unlink()
    for rank, (_, key, views, index) in enumerate(ranked[: record["worst_overlays"]], start=1):
        view = _read_views(views)[index]
        overlays.append(plot_overlay(view, safe_join(out_dir, "overlays", f"{rank:02d}_{key}.png")))
    summary = _summary(results, record["model"], record["protocol"], record["manifest_sha256"])
    if "preprocessing" in record:
        summary["preprocessing"] = record["preprocessing"]
    summary_path = out_dir / "summary.json"
    atomic_write_bytes(
        summary_path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
    )
    predictions = sorted((out_dir / "predictions").glob("*/*.nii.gz"))
    logger.info("evaluation summarised in %s (%d targets)", out_dir, targets)
    return EvaluationReport(
        out_dir, results_path, written, plot, overlays, predictions, summary_path, summary
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
            "windows_predicted": step.windows_predicted,
            "seeded_clicks": step.seeded_clicks,
            "protocol": config.protocol,
            "click_rule": config.click_rule,
            "seed": config.seed,
            "nsd_tolerance_mm": config.nsd_tolerance_mm,
        }
        for step in result.clicks
    ]


class _CasePrediction:
    """The multi-label prediction of one case, built class by class (original grid).

    Voxel values are 1, 2, ... in the order classes are added; where final predictions overlap,
    the class with the highest probability wins (probabilities kept as float16). ``write``
    saves ``<case>.nii.gz`` and the value -> class legend ``<case>.json`` in ``folder``;
    ``add(..., class_mask=True)`` also saves ``<case>/<class>.nii.gz``.
    """

    def __init__(self, image: nib.Nifti1Image, folder: Path, case_id: str, classes: int) -> None:
        self.image = image
        self.folder = folder
        self.case_id = case_id
        dtype = np.uint8 if classes < 256 else np.uint16
        self.labels = np.zeros(image.shape[:3], dtype)
        self.best = np.zeros(image.shape[:3], np.float16)
        self.legend: dict[int, str] = {}

    def add(self, class_name: str, result: TargetResult, class_mask: bool) -> None:
        value = len(self.legend) + 1
        footprint = result.footprint
        probs = result.probabilities.astype(np.float16, copy=False)
        wins = (probs > result.threshold) & (probs > self.best[footprint])
        self.labels[footprint][wins] = value
        self.best[footprint][wins] = probs[wins]
        self.legend[value] = class_name
        if class_mask:
            mask = result.full_prediction(self.labels.shape).astype(np.uint8)
            save_nifti(
                make_image(mask, self.image.affine, like=self.image),
                safe_join(self.folder, self.case_id, f"{class_name}.nii.gz"),
            )

    def write(self) -> Path:
        path = safe_join(self.folder, f"{self.case_id}.nii.gz")
        save_nifti(make_image(self.labels, self.image.affine, like=self.image), path)
        legend = json.dumps(self.legend, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(path.with_name(f"{self.case_id}.json"), legend.encode())
        return path


def _spacing_value(spacing: Any) -> float | list[float] | str | None:
    """The protocol's ``spacing_mm`` option: one number when isotropic (as before the record),
    else three; ``"native"`` or None as given."""
    if spacing is None or isinstance(spacing, str):
        return None if spacing is None else spacing.lower()
    values = [float(v) for v in np.atleast_1d(spacing)]
    return values[0] if len(set(values)) == 1 else values


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _summary(results: pd.DataFrame, model: str, protocol: dict, manifest_hash: str) -> dict:
    """The promotion gate's input: mean scores at the reported clicks and per category at 5."""
    targets = per_target(results)
    reported = report_clicks_from(targets)
    gate_clicks = GATE_CLICKS if GATE_CLICKS in reported else reported[-1]
    categories = targets.groupby("category", sort=True)[f"dice_{gate_clicks}"].mean()
    return {
        "model": model,
        "manifest_sha256": manifest_hash,
        "targets": len(targets),
        "protocol": protocol,
        "mean_dice": {str(k): _nan_to_none(targets[f"dice_{k}"].mean()) for k in reported},
        "mean_nsd": {str(k): _nan_to_none(targets[f"nsd_{k}"].mean()) for k in reported},
        "dice_auc": _nan_to_none(targets["dice_auc"].mean()),
        "gate_clicks": gate_clicks,
        "category_dice": {str(c): _nan_to_none(v) for c, v in categories.items()},
    }

"""Prepare raw datasets into per-class label trees and Parquet manifests.

Library API (the ``neurosam3d prepare`` command, DVC and Dagster all call these)::

    from neurosam3d.data.prepare import prepare_dataset, prepare_datasets
    from neurosam3d.data.config import load_dataset_config, config_for_layout

    config = load_dataset_config("sample_totalsegmentator")    # configs/datasets/<name>.yaml
    report = prepare_dataset(config, "work/prepared", workers=2)
    config = config_for_layout("nnunet", "/data/Dataset027_ACDC")  # no config needed
    reports = prepare_datasets(["sample_msd_spinalcord", config], "work/prepared")

Output under ``out_dir`` (docs/manifest.md): the label tree ``<dataset>/images<SET>/...`` and
``<dataset>/labels<SET>/<class>/<case>.nii.gz``; the training store
``<dataset>/store<SET>/<case>/`` (:mod:`neurosam3d.store`); ``manifests/<dataset>_<split>.parquet``,
``manifests/<dataset>_absent.parquet``, ``manifests/<dataset>_quarantine.parquet``,
``manifests/<dataset>_store.parquet``; the combined ``manifest.parquet``, ``absent.parquet``,
``quarantine.parquet`` and ``store.parquet`` over every dataset prepared into ``out_dir``; and per-case records in ``.prepare/<dataset>/`` that make reruns incremental.
Cases run in parallel worker processes; rejected inputs go to the quarantine table while the
rest of the dataset is prepared. One ``prepare`` per dataset and output folder at a time: a second
one is refused with :class:`DatasetBusyError` while the first holds the dataset's lock
(``.prepare/<dataset>.neurosam3d-lock``); different datasets may run concurrently into one folder.
``shard=(I, N)`` prepares only the cases of shard I of N (:mod:`neurosam3d.data.shards`), each
shard into its own output folder, so that N processes or machines prepare one dataset at once;
``neurosam3d combine`` merges the shards' tables.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.context import BaseContext
from pathlib import Path

from neurosam3d.data.cases import CaseSpec, Discovery, finalise_cases
from neurosam3d.data.casework import (
    CaseOutcome,
    PrepareParams,
    remove_output,
    run_case,
    worker_died,
)
from neurosam3d.data.config import ConfigError, DatasetConfig, load_dataset_config
from neurosam3d.data.layouts import LAYOUTS
from neurosam3d.data.manifest import (
    MANIFESTS_DIR,
    dataset_table_paths,
    rebuild_combined,
    write_dataset_tables,
)
from neurosam3d.data.problems import Problem
from neurosam3d.data.records import (
    RECORD_SUFFIX,
    RECORDS_DIR,
    Digest,
    digests_path,
    read_digests,
    read_record,
    records_dir,
    write_digests,
)
from neurosam3d.data.shards import (
    ASSIGNMENT,
    WHOLE,
    Shard,
    ShardRecord,
    case_list_digest,
    claim_path,
    format_shard,
    in_shard,
    read_shard_record,
    shard_record_path,
    write_shard_record,
)
from neurosam3d.io.atomic import (
    TMP_MARKER,
    atomic_write_bytes,
    ensure_writable_dir,
    remove_stale_temporaries,
)
from neurosam3d.io.locks import exclusive_or_refuse
from neurosam3d.io.nifti import DEFAULT_COMPRESSLEVEL
from neurosam3d.io.paths import check_name
from neurosam3d.taxonomy import categorise

log = logging.getLogger(__name__)

#: Called after each case with (cases done, cases total).
Progress = Callable[[int, int], None]
#: Suffix of lock files (``.dvcignore`` leaves them out of DVC's hashes).
LOCK_SUFFIX = ".neurosam3d-lock"


class DatasetBusyError(RuntimeError):
    """Another process is preparing the same dataset into the same output folder."""


class ShardConflictError(RuntimeError):
    """The output folder holds another shard of the dataset (or its unsharded preparation)."""


@contextlib.contextmanager
def dataset_lock(out_dir: Path, dataset: str) -> Iterator[None]:
    """Hold the exclusive lock of ``dataset`` in ``out_dir`` or raise :class:`DatasetBusyError`.

    A non-blocking ``flock`` on the empty file ``OUT/.prepare/<dataset>.neurosam3d-lock``: a
    second writer fails at once with a clear error instead of racing the first one (deleting its
    temporary files, interleaving its tables). The kernel releases it when the holder exits.
    """
    path = out_dir / RECORDS_DIR / f"{check_name(dataset, 'dataset name')}{LOCK_SUFFIX}"
    refusal = partial(
        DatasetBusyError,
        f"dataset {dataset!r} is being prepared into {out_dir} by another process "
        f"(it holds {path}); wait for it to finish, then run again",
    )
    with exclusive_or_refuse(path, refusal):
        yield


@dataclass
class PrepareReport:
    """What one ``prepare_dataset`` call did."""

    dataset: str
    out_dir: Path
    raw_root: Path
    shard: Shard = WHOLE
    cases: int = 0
    prepared: int = 0
    skipped: int = 0
    rejected_cases: int = 0
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        part = "" if self.shard == WHOLE else f" shard {format_shard(self.shard)}"
        return (
            f"{self.dataset}{part}: {self.cases} cases ({self.prepared} prepared, {self.skipped} "
            f"unchanged, {self.rejected_cases} rejected), {self.rows} masks, "
            f"{len(self.problems)} quarantine rows, {self.seconds:.1f} s -> {self.out_dir}"
        )


def default_workers() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _known_for(case: CaseSpec, known: dict[str, Digest]) -> dict[str, Digest]:
    """The digests of ``case``'s inputs among ``known`` (what a worker needs, nothing more)."""
    return {str(p): known[str(p)] for p in case.inputs if str(p) in known}


def _run_all(
    cases: list[CaseSpec],
    out_dir: Path,
    params: PrepareParams,
    workers: int,
    progress: Progress | None,
    known: dict[str, Digest],
) -> Iterator[CaseOutcome]:
    total = len(cases)
    step = max(1, total // 10)

    def report(done: int, outcome: CaseOutcome) -> None:
        if progress:
            progress(done, total)
        if done % step == 0 or done == total:
            log.info("%d/%d cases (last: %s)", done, total, outcome.case_id)

    if workers <= 1 or total <= 1:
        for done, case in enumerate(cases, 1):
            outcome = run_case(case, out_dir, params, _known_for(case, known))
            report(done, outcome)
            yield outcome
        return
    # fork: workers start in milliseconds with everything imported and never re-run __main__;
    # they only use numpy/scipy/nibabel/isal, which are safe to use in a forked child.
    context = multiprocessing.get_context("fork")
    finished: set[str] = set()
    try:
        with ProcessPoolExecutor(min(workers, total), mp_context=context) as pool:
            futures = [
                pool.submit(run_case, case, out_dir, params, _known_for(case, known))
                for case in cases
            ]
            for future in as_completed(futures):
                outcome = future.result()
                finished.add(outcome.case_id)
                report(len(finished), outcome)
                yield outcome
    except BrokenProcessPool:
        # A worker died (SIGKILL, out of memory): every case in flight fails with it. Retry those
        # one at a time, each in a fresh single-worker pool, so only the culprit is quarantined.
        left = [case for case in cases if case.case_id not in finished]
        log.warning("a worker process died; retrying %d unfinished cases one by one", len(left))
        for case in left:
            outcome = _run_isolated(case, out_dir, params, context, _known_for(case, known))
            finished.add(case.case_id)
            report(len(finished), outcome)
            yield outcome


def _run_isolated(
    case: CaseSpec,
    out_dir: Path,
    params: PrepareParams,
    context: BaseContext,
    known: dict[str, Digest],
) -> CaseOutcome:
    """``run_case`` in its own worker process; a crash becomes the case's quarantine row."""
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(run_case, case, out_dir, params, known).result()
        except BrokenProcessPool as exc:
            log.error("%s/%s: the worker process died", case.dataset, case.case_id)
            return worker_died(case, exc)


def _remove_vanished(out_dir: Path, dataset: str, keep: set[str]) -> None:
    """Remove records and outputs of cases no longer in the raw dataset (or now rejected early)."""
    for path in sorted(records_dir(out_dir, dataset).glob(f"*{RECORD_SUFFIX}")):
        case_id = path.name.removesuffix(RECORD_SUFFIX)
        if case_id in keep:
            continue
        record = read_record(path) or {}
        for rel in record.get("outputs", {}):
            remove_output(out_dir / rel)
        path.unlink()
        log.info("%s: removed outputs of vanished case %s", dataset, case_id)


def _clean_temporaries(out_dir: Path, dataset: str) -> None:
    """Delete temporary files a killed run of this dataset left behind."""
    removed = 0
    for folder in (out_dir / dataset, records_dir(out_dir, dataset)):
        if folder.is_dir():
            removed += remove_stale_temporaries(folder)
    for path in (out_dir / MANIFESTS_DIR).glob(f".{dataset}_*{TMP_MARKER}*"):
        path.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("%s: removed %d temporary files of an interrupted run", dataset, removed)


def discover(config: DatasetConfig, raw_root: str | os.PathLike[str] | None = None) -> Discovery:
    """The dataset's cases and dataset-level problems (no image is opened)."""
    root = config.resolve_root(raw_root)
    return finalise_cases(config, LAYOUTS[config.layout](config, root))


def prepare_dataset(
    config: DatasetConfig | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    raw_root: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    spacing_mm: float | tuple[float, float, float] | None = None,
    orientation: str | None = None,
    compresslevel: int = DEFAULT_COMPRESSLEVEL,
    progress: Progress | None = None,
    shard: Shard = WHOLE,
) -> PrepareReport:
    """Prepare one dataset into ``out_dir`` and rebuild the combined tables there.

    ``config``: a :class:`DatasetConfig` or a config name/path (:func:`load_dataset_config`).
    ``raw_root``: base of a relative config ``root`` (see :mod:`neurosam3d.data.config`).
    ``workers``: worker processes (default: all cores; 1 runs in this process).
    ``spacing_mm``: target voxel size in mm (one value: isotropic, or three along the output
    axes), or None to keep the native grid; ``orientation``: axis codes (e.g. ``"RAS"``) to
    reorient every case to, or None to keep the stored axes. Both follow the package's one grid
    convention (:mod:`neurosam3d.transforms.geometry`), so a model trained on the output and
    recording them (:class:`~neurosam3d.transforms.Preprocessing`) is evaluated and served on
    the same voxel centres. ``compresslevel``: igzip level 1-3 of the written ``.nii.gz`` files.
    ``shard``: ``(I, N)``, prepare only the cases of shard I of N (and the quarantine rows of
    their ids; dataset-level rows go to shard 1) into ``out_dir``, which must hold no other
    shard of the dataset (:class:`ShardConflictError`); see :mod:`neurosam3d.data.shards`.

    Input problems become quarantine rows. A failure to write (disk full, read-only or
    unwritable ``out_dir``) raises :class:`~neurosam3d.io.atomic.OutputError`: the outputs of
    finished cases stay valid and a rerun continues from them.
    """
    started = time.perf_counter()
    if not isinstance(config, DatasetConfig):
        config = load_dataset_config(config)
    try:  # config_from_dict checks it too; a DatasetConfig built or replaced in code may not be
        check_name(config.name, "dataset name")
    except ValueError as exc:
        raise ConfigError(f"{config.source or 'dataset config'}: {exc}") from exc
    out = ensure_writable_dir(Path(out_dir).resolve())
    root = config.resolve_root(raw_root)
    found = finalise_cases(config, LAYOUTS[config.layout](config, root))
    record = _shard_record(config.name, found, shard)
    if record is not None:
        found = Discovery(
            [c for c in found.cases if in_shard(c.case_id, shard)],
            [p for p in found.problems if in_shard(p.case_id, shard)],
            found.licence,
        )
    licence = config.licence if config.licence != "unknown" else found.licence or "unknown"
    spacing = None
    if spacing_mm is not None:
        values = [float(spacing_mm)] * 3 if isinstance(spacing_mm, int | float) else spacing_mm
        spacing = tuple(float(v) for v in values)
    params = PrepareParams(
        spacing,  # type: ignore[arg-type]
        compresslevel,
        orientation=orientation.upper() if orientation else None,
    )
    log.info(
        "%s: %d cases%s from %s (layout %s)",
        config.name,
        len(found.cases),
        "" if record is None else f" of shard {record.shard} ({record.dataset_cases} in all)",
        root,
        config.layout,
    )
    with dataset_lock(out, config.name):
        _claim_shard_folder(out, config.name, shard)
        done = shard_record_path(out / MANIFESTS_DIR, config.name)
        if record is not None:
            _drop_changed_record(done, record)
        report = _prepare_locked(config, out, root, found, licence, params, workers, progress)
        report.shard = shard
        if record is not None:  # last: a record says its tables are complete
            write_shard_record(done, record)
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report


def _shard_record(dataset: str, found: Discovery, shard: Shard) -> ShardRecord | None:
    """The record of ``shard`` of the discovered dataset (None when unsharded)."""
    if shard == WHOLE:
        return None
    every = {c.case_id for c in found.cases} | {p.case_id for p in found.problems if p.case_id}
    return ShardRecord(
        dataset=dataset,
        shard=format_shard(shard),
        assignment=ASSIGNMENT,
        cases=sorted(case_id for case_id in every if in_shard(case_id, shard)),
        dataset_cases=len(every),
        dataset_cases_sha256=case_list_digest(every),
    )


def _drop_changed_record(path: Path, record: ShardRecord) -> None:
    """Delete the shard record at ``path`` unless it is ``record``: the shard's cases change, and
    until its tables are rewritten (the new record is written last) combine must see the shard
    as unfinished rather than trust the old record."""
    try:
        if read_shard_record(path) == record:
            return
    except ValueError:  # missing or unreadable
        pass
    path.unlink(missing_ok=True)


def _claim_shard_folder(out: Path, dataset: str, shard: Shard) -> None:
    """Claim ``out`` for ``shard`` of ``dataset``, or refuse when it holds another shard of it
    (this run's vanished-case cleanup and tables would replace that shard's) or its unsharded
    output. The claim (:func:`~neurosam3d.data.shards.claim_path`) is written before any output
    and kept, so a shard killed half-way is rerun into its folder like any other rerun."""
    path = claim_path(out, dataset)
    held: str | None = None
    if path.exists():
        held = f"shard {path.read_text().strip()}"
    elif any(p.exists() for p in dataset_table_paths(out, dataset).values()):
        held = "the unsharded dataset"
    wanted = "the unsharded dataset" if shard == WHOLE else f"shard {format_shard(shard)}"
    if held is not None and held != wanted:
        raise ShardConflictError(
            f"{out} holds {held} of dataset {dataset!r} (see {path}); prepare {wanted} into a "
            f"folder of its own (each shard its own --out), or delete {out}"
        )
    if shard != WHOLE and held is None:
        atomic_write_bytes(path, f"{format_shard(shard)}\n".encode(), durable=False)


def _prepare_locked(
    config: DatasetConfig,
    out: Path,
    root: Path,
    found: Discovery,
    licence: str,
    params: PrepareParams,
    workers: int | None,
    progress: Progress | None,
) -> PrepareReport:
    """The body of :func:`prepare_dataset`, run while holding the dataset's lock."""
    _clean_temporaries(out, config.name)
    report = PrepareReport(config.name, out, root, cases=len(found.cases))
    rows_by_split: dict[str, list[dict]] = {case.split: [] for case in found.cases}
    absent: list[dict] = []
    store: list[dict] = []
    problems = [p.as_row() for p in found.problems]
    rejected = 0
    cache = digests_path(out, config.name)
    known = read_digests(cache)
    digests: dict[str, Digest] = {}
    cases = _run_all(found.cases, out, params, workers or default_workers(), progress, known)
    for outcome in cases:
        digests.update(outcome.digests)
        record = outcome.record
        if outcome.skipped:
            report.skipped += 1
        else:
            report.prepared += 1
        rejected += not record["rows"]
        for row in record["rows"]:
            row_out = dict(row, category=categorise(row["class_name"]), licence=licence)
            rows_by_split[row["split"]].append(row_out)
        absent.extend(record["absent"])
        store.extend(record.get("store", []))
        problems.extend(record["problems"])
    _remove_vanished(out, config.name, {case.case_id for case in found.cases})
    if digests != known:
        write_digests(cache, digests)
    report.tables = write_dataset_tables(out, config.name, rows_by_split, absent, problems, store)
    report.tables |= rebuild_combined(out)
    report.rejected_cases = rejected
    report.rows = sum(len(rows) for rows in rows_by_split.values())
    report.problems = sorted((Problem(**p) for p in problems), key=Problem.sort_key)
    return report


def prepare_datasets(
    configs: Iterable[DatasetConfig | str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    **options: object,
) -> list[PrepareReport]:
    """Prepare several datasets into one ``out_dir`` (options as for :func:`prepare_dataset`)."""
    return [prepare_dataset(config, out_dir, **options) for config in configs]  # type: ignore[arg-type]

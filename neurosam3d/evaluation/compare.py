"""Several evaluations in the same tables: e.g. a 3-D model (``full``) beside SAM and SAM-Med2D
(``slice2d``), all on the same manifests.

:func:`compare` reads the ``results.parquet`` and ``run.json`` of each evaluation folder (written
by :func:`~.api.evaluate` or :func:`~.api.summarise`) and writes into ``out_dir`` the combined
``results.parquet``, ``tables/`` (:func:`~.tables.write_tables`: one ``categories`` row block per
model) and ``dice_vs_clicks.png``. Refused with :class:`~.api.EvaluationStateError`: a folder
that is not a summarised evaluation, folders evaluated on other targets (their manifest hashes
differ: their means would not compare), and two folders with the same model label (pass
``--model-name`` to tell them apart).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from neurosam3d.evaluation.api import RUN_FILE, EvaluationStateError
from neurosam3d.evaluation.plots import plot_dice_vs_clicks
from neurosam3d.evaluation.results import RESULTS_SCHEMA, SORT_KEYS, read_results, write_results
from neurosam3d.evaluation.tables import write_tables

logger = logging.getLogger(__name__)


def compare(
    folders: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Combined results, tables and plot of the evaluation ``folders`` in ``out_dir``.

    Returns ``{table name: csv path}`` as :func:`~.tables.write_tables` does (plus
    ``"results"`` and ``"plot"``).
    """
    if not folders:
        raise EvaluationStateError("give at least one evaluation folder to compare")
    out_dir = Path(out_dir)
    tables, manifest, labels = [], None, {}
    for folder in map(Path, folders):
        run, results = folder / RUN_FILE, folder / "results.parquet"
        if not run.is_file() or not results.is_file():
            raise EvaluationStateError(
                f"{folder}: no {RUN_FILE} and results.parquet, not a summarised evaluation "
                "(run neurosam3d evaluate --summarise on it first)"
            )
        record = json.loads(run.read_text())
        if manifest is None:
            manifest = (folder, record["manifest_sha256"])
        elif record["manifest_sha256"] != manifest[1]:
            raise EvaluationStateError(
                f"{folder}: evaluated on other targets than {manifest[0]} (manifest hashes "
                f"{record['manifest_sha256'][:12]}... and {manifest[1][:12]}...): only "
                "evaluations of the same manifests compare"
            )
        if record["model"] in labels:
            raise EvaluationStateError(
                f"{folder} and {labels[record['model']]} both hold model {record['model']!r}: "
                "evaluate one of them again with --model-name"
            )
        labels[record["model"]] = folder
        tables.append(pq.read_table(results, schema=RESULTS_SCHEMA))
    combined = pa.concat_tables(tables).sort_by([(k, "ascending") for k in SORT_KEYS])
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {"results": write_results(combined, out_dir / "results.parquet")}
    frame = read_results(written["results"])
    written.update(write_tables(frame, out_dir / "tables"))
    written["plot"] = plot_dice_vs_clicks(frame, out_dir / "dice_vs_clicks.png")
    logger.info("compared %d evaluations (%s) in %s", len(folders), ", ".join(labels), out_dir)
    return written

"""What a retraining run starts from, and why it runs (the weekly schedule's run config).

``retrain="champion"`` fine-tunes from the ``@champion``'s weights (downloaded from the registry
into ``work/retrain/``), ``retrain="fresh"`` starts a new run; both with their own seed, so two
retrainings on the same data are two different runs. Without a champion, ``champion`` falls
back to ``fresh`` and says so. The reason is logged on the MLflow run
(``neurosam3d.retrain_reason``, ``neurosam3d.retrain_start``) and in the Dagster metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

REASON_TAG = "neurosam3d.retrain_reason"
START_TAG = "neurosam3d.retrain_start"
MODES = ("champion", "fresh")


@dataclass(frozen=True)
class RetrainStart:
    """The training overrides (``--set`` values) of a retraining run and what they mean."""

    overrides: tuple[str, ...]
    start: str  # e.g. "fine-tuned from neurosam3d v3 (@champion), seed 42"


def retrain_start(
    client: MlflowClient, name: str, mode: str, seed: int, download_to: Path
) -> RetrainStart:
    """Where a retraining of model ``name`` starts (``mode`` in :data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"retrain must be one of {MODES}, not {mode!r}")
    if mode == "champion":
        from mlflow.artifacts import download_artifacts

        from neurosam3d.registry import tags as T
        from neurosam3d.registry.promotion import version_by_alias

        champion = version_by_alias(client, name, T.CHAMPION)
        if champion is not None:
            folder = download_to / f"{name}-v{champion.version}"
            local = download_artifacts(
                artifact_uri=client.get_model_version_download_uri(name, champion.version),
                dst_path=str(folder),
                tracking_uri=client.tracking_uri,
            )
            weights = Path(local) / "artifacts" / "weights.safetensors"
            if not weights.is_file():
                raise FileNotFoundError(f"{name} v{champion.version} has no {weights.name}")
            return RetrainStart(
                (f"model.checkpoint={weights}", f"seed={seed}"),
                f"fine-tuned from {name} v{champion.version} (@champion), seed {seed}",
            )
        return RetrainStart(
            (f"seed={seed}",), f"new run with seed {seed} ({name} has no @champion)"
        )
    return RetrainStart((f"seed={seed}",), f"new run with seed {seed}")

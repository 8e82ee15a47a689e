"""The (dataset, class_name) pairs a training run selects: what a model has *seen*.

Recorded in the run's checkpoints (``neurosam3d.taxonomy.TRAINED_PAIRS_KEY``) and as an MLflow
artifact, so that evaluation reads seen/unseen from the model itself.
"""

from __future__ import annotations

from neurosam3d.training.config import DataConfig


def trained_pairs(cfg: DataConfig) -> list[list[str]]:
    """Sorted ``[dataset, class_name]`` pairs of the training rows ``cfg`` selects."""
    from neurosam3d.training.datamodule import select_rows

    table = select_rows(cfg, cfg.train_manifests, cfg.train_splits)
    pairs = {(str(d), str(c)) for d, c in zip(table.dataset, table.class_name, strict=True)}
    return [list(p) for p in sorted(pairs)]

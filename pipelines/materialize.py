"""Materialise every asset on the Dagster instance at ``$DAGSTER_HOME`` (what ``make demo`` runs).

``python -m pipelines.materialize``: adds a partition per entry of params.yaml's
``prepare.shards`` (a dataset, or a shard of one), runs the ``prepare_dataset`` job for each, then the ``retrain`` job (combined manifest, training,
evaluation, registration, promotion), all in this process. The runs then show in ``dagster dev``.
"""

import logging
import sys

import dagster as dg

from pipelines.definitions import PROJECT, build_definitions
from pipelines.partitions import SHARDS
from pipelines.resources import ProjectResource

log = logging.getLogger(__name__)


def materialize_all(instance: dg.DagsterInstance, defs: dg.Definitions, shards: list[str]) -> bool:
    """Run every partition (dataset or shard), then retraining; True when every run succeeded."""
    known = set(instance.get_dynamic_partitions(SHARDS.name))
    instance.add_dynamic_partitions(SHARDS.name, [k for k in shards if k not in known])
    prepare = defs.resolve_job_def("prepare_dataset")
    for key in shards:
        log.info("dataset %s: raw data version, label tree, manifests", key)
        if not prepare.execute_in_process(instance=instance, partition_key=key).success:
            return False
    log.info("combined manifest, training, evaluation, registration, promotion")
    return defs.resolve_job_def("retrain").execute_in_process(instance=instance).success


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    defs = build_definitions(PROJECT)
    shards = ProjectResource(root=str(PROJECT)).shards()
    ok = materialize_all(dg.DagsterInstance.get(), defs, shards)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

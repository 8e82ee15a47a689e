"""Run the whole pipeline as Dagster runs launched by the daemon (what the team ``make demo`` runs).

``python -m pipelines.submit``: adds a partition per entry of params.yaml's ``prepare.shards``
(a dataset, or one shard of a dataset prepared in N), submits the ``prepare_dataset`` run of every
partition at once (so the N shards of a dataset are prepared side by side) to the webserver at ``$DAGSTER_WEBSERVER_URL``
(GraphQL), where the queued run coordinator holds them until the daemon launches them within the
instance's run limits (pipelines/team/dagster.yaml), then, when all succeeded, the ``retrain``
run. Nothing runs in this process: it only submits and follows the runs. Exit 0 when every run
succeeded; a failed run's step errors are printed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from urllib.parse import urlparse

import dagster as dg

from pipelines.partitions import SHARDS
from pipelines.resources import ProjectResource

log = logging.getLogger(__name__)

#: run statuses after which a run does not change any more
_FINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def graphql_client(url: str | None = None):  # -> DagsterGraphQLClient
    """A GraphQL client of the webserver at ``url`` (default ``$DAGSTER_WEBSERVER_URL``)."""
    from dagster_graphql import DagsterGraphQLClient

    url = url or os.environ.get("DAGSTER_WEBSERVER_URL") or "http://127.0.0.1:3000"
    parsed = urlparse(url)
    return DagsterGraphQLClient(parsed.hostname or "127.0.0.1", port_number=parsed.port)


def wait_for_runs(
    instance: dg.DagsterInstance, run_ids: dict[str, str], poll_s: float = 3.0
) -> dict[str, str]:
    """Follow ``{label: run_id}`` until every run is final, logging each status change; return
    ``{label: final status}``."""
    seen: dict[str, str] = {}
    while True:
        for label, run_id in run_ids.items():
            run = instance.get_run_by_id(run_id)
            status = run.status.value if run is not None else "MISSING"
            if seen.get(label) != status:
                log.info("run %s (%s): %s", label, run_id[:8], status)
                seen[label] = status
        if all(s in _FINAL or s == "MISSING" for s in seen.values()):
            return seen
        time.sleep(poll_s)


def step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The error messages of a run's failed steps and of the run itself."""
    found = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not (event.is_step_failure or event.is_run_failure):
            continue
        data = event.event_specific_data
        error = getattr(data, "error", None)
        found.append(f"{event.step_key or 'run'}: {error.to_string() if error else event.message}")
    return found


def submit_all(instance: dg.DagsterInstance, shards: list[str]) -> bool:
    """Submit and follow every partition's run (dataset or shard), then retraining; True on
    success."""
    client = graphql_client()
    known = set(instance.get_dynamic_partitions(SHARDS.name))
    instance.add_dynamic_partitions(SHARDS.name, [k for k in shards if k not in known])
    stages = [
        {
            f"prepare_dataset[{k}]": client.submit_job_execution(
                "prepare_dataset", tags={"dagster/partition": k}
            )
            for k in shards
        },
    ]
    log.info("submitted %d dataset/shard runs; the daemon launches them", len(shards))
    for index, runs in enumerate(stages):
        final = wait_for_runs(instance, runs)
        failed = [label for label, status in final.items() if status != "SUCCESS"]
        for label in failed:
            for error in step_errors(instance, runs[label]):
                log.error("%s: %s", label, error)
        if failed:
            return False
        if index == 0:
            stages.append({"retrain": client.submit_job_execution("retrain")})
            log.info("combined manifest, training, evaluation, registration, promotion")
    return True


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from pipelines.definitions import PROJECT

    shards = ProjectResource(root=str(PROJECT)).shards()
    with dg.DagsterInstance.get() as instance:
        return 0 if submit_all(instance, shards) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The executor that runs a Dagster run's steps, chosen by configuration (``NEUROSAM3D_EXECUTOR``).

- ``multiprocess`` (default): each step in its own process on the run's machine.
- ``celery``: each step is a task on a Celery broker (``NEUROSAM3D_CELERY_BROKER``, results in
  ``NEUROSAM3D_CELERY_BACKEND``), run by whichever ``dagster-celery`` worker takes it; the team
  deployment starts two workers on a Redis broker (``make team-up``).
- ``k8s``: each step a Kubernetes Job (``dagster_k8s.k8s_job_executor``; dagster-k8s is installed in
  the cluster's image, not here: README "Team deployment", pipelines/team/k8s.yaml).
"""

from __future__ import annotations

import os

import dagster as dg

EXECUTOR_ENV = "NEUROSAM3D_EXECUTOR"
EXECUTORS = ("multiprocess", "celery", "k8s")


def configured_executor(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor called ``name`` (default: ``$NEUROSAM3D_EXECUTOR``, else ``multiprocess``)."""
    name = name or os.environ.get(EXECUTOR_ENV) or "multiprocess"
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {
                "broker": {"env": "NEUROSAM3D_CELERY_BROKER"},
                "backend": {"env": "NEUROSAM3D_CELERY_BACKEND"},
            },
            name="celery",
        )
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise ValueError(
                f"{EXECUTOR_ENV}=k8s needs the dagster-k8s package (in the cluster's image)"
            ) from exc
        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, not {name!r}")

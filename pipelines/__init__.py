"""Dagster orchestration for NeuroSAM3D: assets, checks, schedules, sensors and resources.

Thin by design: every asset runs a ``neurosam3d`` CLI stage (the same command ``dvc repro`` runs,
resolved from ``dvc.yaml`` and ``params.yaml``) or calls one library function, then reports
metadata. The definitions live in :mod:`pipelines.definitions`.
"""

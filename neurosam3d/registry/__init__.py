"""The MLflow model registry: registration of trained models, gated promotion by alias, rollback.

Kept free of heavy imports at package level; MLflow is imported inside the functions that use it.
"""

"""Interactive evaluation of promptable 3D segmentation models (see README "Evaluation and inference")."""

from neurosam3d.evaluation.api import EvaluationReport, evaluate

__all__ = ["EvaluationReport", "evaluate"]

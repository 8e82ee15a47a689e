"""Lightning training of the promptable 3D model from Parquet manifests, tracked in MLflow.

``train(load_config("configs/demo-cpu.yaml", ["trainer.max_steps=20"]), "work/train")`` runs one
training and returns a :class:`TrainSummary`. Lightning is imported only when training starts.
"""

from neurosam3d.training.config import ConfigError, TrainConfig, config_from_dict, load_config
from neurosam3d.training.run import TrainSummary, train

__all__ = ["ConfigError", "TrainConfig", "TrainSummary", "config_from_dict", "load_config", "train"]

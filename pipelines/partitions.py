"""One partition per raw dataset; keys are params.yaml's ``prepare.dataset`` entries.

Dynamic, so that a dataset added to params.yaml becomes a partition without a code change
(:func:`pipelines.sensors.new_dataset_sensor` adds it).
"""

from __future__ import annotations

import dagster as dg

DATASETS = dg.DynamicPartitionsDefinition(name="datasets")

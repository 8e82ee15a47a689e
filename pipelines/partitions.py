"""One partition per shard of a raw dataset; keys are params.yaml's ``prepare.shards`` entries.

A dataset prepared whole is one shard, keyed by the dataset (``sample_kits_style_mr``); a dataset
prepared in N shards at once has N keys ``<dataset>-<I>of<N>`` (:func:`shard_key`), so N runs
(or the steps of one backfill, on N workers) prepare it side by side. Each key is also the DVC
stage ``prepare@<key>`` and the folder ``prepare.out/<key>/``. Dynamic, so that an entry added
to params.yaml becomes a partition without a code change (:func:`pipelines.automation.new_shard_sensor`
adds it).
"""

from __future__ import annotations

import dagster as dg

SHARDS = dg.DynamicPartitionsDefinition(name="shards")


def shard_key(dataset: str, shard: tuple[int, int]) -> str:
    """The partition key of shard ``(I, N)`` of ``dataset``: the dataset itself when N is 1,
    else ``<dataset>-<I>of<N>``."""
    index, count = shard
    return dataset if count == 1 else f"{dataset}-{index}of{count}"

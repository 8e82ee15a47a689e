"""Read ``params.yaml``, the one place for pipeline parameters (DVC reads the same file).

Each step's section holds the options of its ``neurosam3d`` subcommand; :func:`cli_options`
expands a section exactly as DVC does for ``${section}`` in dvc.yaml (``parsing.list: append``).
:func:`shard_entries` reads and checks ``prepare.shards``, the partitions of the data assets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.partitions import shard_key


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (as DVC does), where
    ``yaml.safe_load`` would silently keep the last (a shard listed twice)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(project: Path) -> dict[str, Any]:
    """The parsed ``params.yaml`` of ``project`` (``ValueError`` when a key is repeated)."""
    path = project / "params.yaml"
    with path.open() as handle:
        try:
            params = yaml.load(handle, Loader=_UniqueKeyLoader)  # a SafeLoader
        except yaml.constructor.ConstructorError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(params, dict) or "prepare" not in params:
        raise ValueError(f"{path}: expected a mapping with a 'prepare' section")
    return params


def cli_options(section: dict[str, Any]) -> list[str]:
    """``{"out": "x", "dataset": ["a", "b"], "strict": True}`` -> ``--out x --dataset a --dataset b --strict``."""
    args: list[str] = []
    for key, value in section.items():
        if isinstance(value, bool):
            args += [f"--{key}"] if value else [f"--no-{key}"]
        elif isinstance(value, list):
            for item in value:
                args += [f"--{key}", str(item)]
        else:
            args += [f"--{key}", str(value)]
    return args


@dataclass(frozen=True)
class ShardEntry:
    """One entry of ``prepare.shards``: shard ``shard`` (I, N) of dataset ``dataset`` (its config
    key), whose raw folder is ``raw`` (under ``prepare.raw-root``)."""

    key: str
    dataset: str
    raw: str
    shard: tuple[int, int]

    @property
    def spec(self) -> str:
        """``"I/N"``, as ``neurosam3d prepare --shard`` takes it."""
        return f"{self.shard[0]}/{self.shard[1]}"


_FIELDS = {"dataset", "raw", "shard"}


def shard_entries(params: dict[str, Any], source: str = "params.yaml") -> dict[str, ShardEntry]:
    """``prepare.shards`` as ``{key: entry}``, in file order; ``ValueError`` naming the entry and
    the problem unless every key is :func:`~pipelines.partitions.shard_key` of its entry and each
    dataset is listed whole once or as all of its N shards (one count, one raw folder)."""
    from neurosam3d.data.shards import format_shard, parse_shard

    found = params["prepare"].get("shards")
    if not isinstance(found, dict) or not found:
        raise ValueError(f"{source}: prepare.shards must map partition keys to their shards")
    entries: dict[str, ShardEntry] = {}
    for key, value in found.items():
        where = f"{source}: prepare.shards.{key}"
        if not isinstance(value, dict) or set(value) != _FIELDS:
            raise ValueError(
                f"{where}: expected {{dataset: ..., raw: ..., shard: I/N}}, got {value!r}"
            )
        try:
            shard = parse_shard(str(value["shard"]))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        dataset, raw = str(value["dataset"]), str(value["raw"])
        if str(key) != shard_key(dataset, shard):
            raise ValueError(
                f"{where}: the key of shard {format_shard(shard)} of {dataset!r} must be "
                f"{shard_key(dataset, shard)!r}"
            )
        entries[str(key)] = ShardEntry(str(key), dataset, raw, shard)
    by_dataset: dict[str, list[ShardEntry]] = defaultdict(list)
    for entry in entries.values():
        by_dataset[entry.dataset].append(entry)
    for dataset, shards in by_dataset.items():
        counts = sorted({e.shard[1] for e in shards})
        raws = sorted({e.raw for e in shards})
        if len(counts) > 1:
            raise ValueError(
                f"{source}: prepare.shards lists dataset {dataset!r} in {' and '.join(map(str, counts))} "
                "shards: keep the entries of one count"
            )
        if len(raws) > 1:
            raise ValueError(
                f"{source}: prepare.shards gives dataset {dataset!r} the raw folders "
                f"{', '.join(raws)}: its shards must name one"
            )
        missing = sorted(set(range(1, counts[0] + 1)) - {e.shard[0] for e in shards})
        if missing:
            listed = ", ".join(shard_key(dataset, (i, counts[0])) for i in missing)
            lines = "".join(
                f"\n    {shard_key(dataset, (i, counts[0]))}: {{dataset: {dataset}, "
                f"raw: {raws[0]}, shard: {i}/{counts[0]}}}"
                for i in missing
            )
            raise ValueError(
                f"{source}: prepare.shards lists dataset {dataset!r} in {counts[0]} shards but "
                f"not {listed}: add them (each shard is one DVC stage and one partition):{lines}"
            )
    return entries

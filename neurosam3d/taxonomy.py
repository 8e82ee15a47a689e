"""Anatomical categories of class names, and which (dataset, class) pairs a model has seen.

The mapping is data, not code: ``neurosam3d/resources/taxonomy.yaml`` holds ordered rules (exact
names and fnmatch glob patterns such as ``vertebrae_*``); the first matching rule gives the
category, and a class no rule matches is ``"uncategorised"``. Seen/unseen is computed from a
model's training manifest (docs/TAXONOMY.md in the shared folder): a (dataset, class) pair is
*seen* if it occurs in a training-split (``Tr``) row there; Val and Ts rows do not count.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd
    import pyarrow as pa

UNCATEGORISED = "uncategorised"
#: Manifest splits a model trains on; only their rows make a (dataset, class) *seen*.
TRAINING_SPLITS = ("Tr",)


@dataclass(frozen=True)
class CategoryRule:
    """One ordered rule: ``category`` applies to ``names`` (exact) and ``patterns`` (globs)."""

    category: str
    names: frozenset[str]
    patterns: tuple[str, ...]

    def matches(self, class_name: str) -> bool:
        return class_name in self.names or any(
            fnmatch.fnmatchcase(class_name, p) for p in self.patterns
        )


@dataclass(frozen=True)
class Taxonomy:
    """Ordered category rules loaded from a YAML file (see the module docstring)."""

    version: int
    rules: tuple[CategoryRule, ...]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Taxonomy:
        """Load rules from ``path``; raises ``ValueError`` naming the file on a malformed rule."""
        doc = yaml.safe_load(Path(path).read_text())
        rules = []
        for index, rule in enumerate(doc.get("rules", [])):
            if "category" not in rule or not (rule.get("names") or rule.get("patterns")):
                raise ValueError(f"{path}: rule {index} needs a category and names or patterns")
            rules.append(
                CategoryRule(
                    category=str(rule["category"]),
                    names=frozenset(str(n).lower() for n in rule.get("names", [])),
                    patterns=tuple(str(p).lower() for p in rule.get("patterns", [])),
                )
            )
        return cls(version=int(doc.get("version", 1)), rules=tuple(rules))

    def categorise(self, class_name: str) -> str:
        """Category of ``class_name`` (case-insensitive), or ``"uncategorised"``."""
        name = class_name.lower()
        for rule in self.rules:
            if rule.matches(name):
                return rule.category
        return UNCATEGORISED

    @property
    def categories(self) -> list[str]:
        """Distinct categories in rule order."""
        return list(dict.fromkeys(rule.category for rule in self.rules))


@functools.cache
def default_taxonomy() -> Taxonomy:
    """The packaged rules (``neurosam3d/resources/taxonomy.yaml``)."""
    with resources.as_file(resources.files("neurosam3d") / "resources" / "taxonomy.yaml") as path:
        return Taxonomy.from_yaml(path)


@functools.lru_cache(maxsize=4096)
def categorise(class_name: str) -> str:
    """Category of ``class_name`` under the packaged rules, or ``"uncategorised"``."""
    return default_taxonomy().categorise(class_name)


#: Checkpoint key (and MLflow artifact stem) holding the (dataset, class_name) pairs a model was
#: trained on, as a sorted list of ``[dataset, class_name]`` lists.
TRAINED_PAIRS_KEY = "neurosam3d_trained_pairs"


def seen_pairs(
    training_manifest: str | os.PathLike[str] | pd.DataFrame | pa.Table,
    splits: Iterable[str] | None = TRAINING_SPLITS,
) -> set[tuple[str, str]]:
    """The (dataset, class_name) pairs of the rows of ``splits`` in a training manifest.

    ``training_manifest`` is a Parquet file in the manifest schema (docs/manifest.md), or that
    table already loaded (pandas or pyarrow). Only rows whose ``split`` is in ``splits`` count
    (default: the training split ``Tr``), so the combined manifest of ``prepare`` (Tr, Val and Ts
    rows) can be passed as is: a class found only in Val or Ts is *unseen*. ``splits=None``
    counts every row (a manifest without a ``split`` column needs it).
    """
    columns = ["dataset", "class_name"] if splits is None else ["dataset", "class_name", "split"]
    if isinstance(training_manifest, (str, os.PathLike)):
        import pyarrow.parquet as pq

        training_manifest = pq.read_table(training_manifest, columns=columns)
    if hasattr(training_manifest, "to_pydict"):
        data = training_manifest.select(columns).to_pydict()
    else:
        data = {c: training_manifest[c].tolist() for c in columns}
    keep = None if splits is None else set(splits)
    return {
        (dataset, class_name)
        for index, (dataset, class_name) in enumerate(
            zip(data["dataset"], data["class_name"], strict=True)
        )
        if keep is None or data["split"][index] in keep
    }

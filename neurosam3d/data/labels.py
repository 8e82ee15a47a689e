"""Class names and label values: sanitising names into folder names, building label maps.

A class is one binary mask per case. In a label-map layout it is a set of raw label values
(usually one; nnU-Net region labels may list several); in a one-file-per-class layout it has no
values. Names become folder names, so they are sanitised to lower snake case; a raw name holding
a path separator or ``..`` is rejected rather than guessed at, and two raw names that sanitise
to the same folder are both rejected (``class_name_collision``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from neurosam3d.data.problems import Kind

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


class BadClassName(ValueError):
    """A raw class name that cannot become a folder name."""


@dataclass(frozen=True, order=True)
class ClassSpec:
    """One output class: sanitised ``name`` (the folder), its ``raw_name`` and raw label ``values``."""

    name: str
    raw_name: str
    values: tuple[int, ...] = ()

    @property
    def label_value(self) -> int | None:
        """The single raw label value, or None (several values, or a per-class file)."""
        return self.values[0] if len(self.values) == 1 else None


def sanitise_class_name(raw: str) -> str:
    """Lower snake case folder name of ``raw``; raises :class:`BadClassName`.

    ``"Spinal cord GM"`` -> ``"spinal_cord_gm"``; ``"vertebrae_C1"`` -> ``"vertebrae_c1"``.
    Names containing ``/``, ``\\`` or ``..`` are rejected: they would escape the class folder.
    """
    if "/" in raw or "\\" in raw or ".." in raw:
        raise BadClassName(f"class name {raw!r} contains a path separator or '..'")
    name = _NOT_ALNUM.sub("_", raw.strip().lower()).strip("_")
    if not name:
        raise BadClassName(f"class name {raw!r} has no letters or digits")
    return name


@dataclass(frozen=True)
class ClassProblem:
    """A rejected class definition (before any case is read)."""

    raw_name: str
    kind: Kind
    problem: str


def build_classes(
    raw: Iterable[tuple[str, tuple[int, ...]]],
) -> tuple[tuple[ClassSpec, ...], tuple[ClassProblem, ...]]:
    """Sanitise ``(raw_name, values)`` pairs into classes sorted by name, plus rejected names.

    Values of rejected classes stay *known* (callers exclude them from ``unknown_label_value``).
    """
    by_name: dict[str, list[ClassSpec]] = {}
    problems: list[ClassProblem] = []
    for raw_name, values in raw:
        try:
            name = sanitise_class_name(raw_name)
        except BadClassName as exc:
            problems.append(ClassProblem(raw_name, Kind.BAD_CLASS_NAME, str(exc)))
            continue
        by_name.setdefault(name, []).append(ClassSpec(name, raw_name, tuple(values)))
    classes = []
    for name, specs in sorted(by_name.items()):
        if len(specs) > 1:
            raws = sorted(s.raw_name for s in specs)
            for spec in specs:
                problems.append(
                    ClassProblem(
                        spec.raw_name,
                        Kind.CLASS_NAME_COLLISION,
                        f"class names {raws} all become folder {name!r}; rename them in the dataset config",
                    )
                )
            continue
        classes.append(specs[0])
    return tuple(classes), tuple(problems)

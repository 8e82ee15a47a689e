"""Class names become safe folder names; unsafe and colliding names are rejected."""

from __future__ import annotations

import pytest

from neurosam3d.data.labels import BadClassName, ClassSpec, build_classes, sanitise_class_name
from neurosam3d.data.problems import Kind


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Spinal cord GM", "spinal_cord_gm"),
        ("vertebrae_C1", "vertebrae_c1"),
        ("non-enhancing tumor", "non_enhancing_tumor"),
        ("  Left   Kidney ", "left_kidney"),
    ],
)
def test_sanitise(raw: str, name: str) -> None:
    assert sanitise_class_name(raw) == name


@pytest.mark.parametrize("raw", ["prostate/uterus", "..", "a..b", "x\\y", "***"])
def test_unsafe_names_are_rejected(raw: str) -> None:
    with pytest.raises(BadClassName):
        sanitise_class_name(raw)


def test_build_classes_rejects_bad_and_colliding_names() -> None:
    classes, problems = build_classes(
        [("Liver", (1,)), ("liver", (2,)), ("spleen", (3,)), ("a/b", (4,)), ("tumour", (5, 6))]
    )
    assert classes == (ClassSpec("spleen", "spleen", (3,)), ClassSpec("tumour", "tumour", (5, 6)))
    assert classes[1].label_value is None and classes[0].label_value == 3
    assert sorted((p.raw_name, p.kind) for p in problems) == [
        ("Liver", Kind.CLASS_NAME_COLLISION),
        ("a/b", Kind.BAD_CLASS_NAME),
        ("liver", Kind.CLASS_NAME_COLLISION),
    ]

"""Anatomical categories from ordered rules (docs/TAXONOMY.md) and seen (dataset, class) pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neurosam3d.taxonomy import Taxonomy, categorise, default_taxonomy, seen_pairs


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("liver", "abdomen_thorax"),
        ("liver_tumour", "lesion"),  # lesion rules come before organs
        ("kidney_cyst_left", "lesion"),
        ("adrenal_gland_left", "abdomen_thorax"),  # the paper puts adrenal glands there
        ("thyroid_gland", "gland"),
        ("heart", "cardiac"),
        ("atrial_appendage_left", "cardiac"),
        ("iliopsoas_right", "muscle"),  # muscle, never abdomen_thorax
        ("vertebrae_T12", "bone"),  # case-insensitive
        ("rib_left_7", "bone"),
        ("brain", "brain"),
        ("spinal_cord", "nervous"),
        ("spinal_cord_grey_matter", "nervous"),  # spinal cord before brain's grey matter
        ("iliac_artery_left", "abdomen_thorax"),
        ("celiac_trunk", "abdomen_thorax"),
        ("face", "uncategorised"),
    ],
)
def test_categorise(name: str, category: str) -> None:
    assert categorise(name) == category


def test_rules_are_data_and_first_match_wins(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 2\nrules:\n"
        "  - {category: special, names: [liver]}\n"
        "  - {category: organ, patterns: ['liv*', 'kidney_*']}\n"
    )
    rules = Taxonomy.from_yaml(path)
    assert [rules.categorise(n) for n in ("liver", "liverish", "kidney_left", "x")] == [
        "special",
        "organ",
        "organ",
        "uncategorised",
    ]
    assert rules.categories == ["special", "organ"]
    path.write_text("rules:\n  - {category: empty}\n")
    with pytest.raises(ValueError, match="rule 0 needs"):
        Taxonomy.from_yaml(path)


def test_default_rules_cover_the_paper_categories() -> None:
    expected = {"lesion", "nervous", "cardiac", "gland", "muscle", "bone", "brain"}
    assert expected | {"abdomen_thorax"} == set(default_taxonomy().categories)


def test_seen_pairs_from_file_pandas_and_arrow(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"dataset": ["A", "A", "B"], "class_name": ["liver", "liver", "spleen"], "split": "Tr"}
    )
    path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path)
    expected = {("A", "liver"), ("B", "spleen")}
    assert seen_pairs(path) == seen_pairs(frame) == seen_pairs(pa.Table.from_pandas(frame))
    assert seen_pairs(str(path)) == expected


def test_seen_pairs_count_only_training_rows_by_default(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "dataset": ["A", "A", "A", "B"],
            "class_name": ["liver", "tumour", "cyst", "spleen"],
            "split": ["Tr", "Val", "Ts", "Tr"],
        }
    )
    path = tmp_path / "combined.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path)
    expected = {("A", "liver"), ("B", "spleen")}
    assert seen_pairs(path) == seen_pairs(frame) == seen_pairs(pa.Table.from_pandas(frame))
    assert seen_pairs(path) == expected  # tumour occurs only in Val, cyst only in Ts: unseen
    assert seen_pairs(path, splits=("Tr", "Val")) == expected | {("A", "tumour")}
    assert len(seen_pairs(frame, splits=None)) == 4

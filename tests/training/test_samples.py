"""Manifest selection, balanced sampling weights and the fork-safe row arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neurosam3d.data.schema import SchemaError
from neurosam3d.training.samples import (
    SampleFilter,
    SampleTable,
    manifest_hash,
    read_manifests,
    sampling_weights,
)


def test_filters_select_rows_by_split_class_and_size(ct_manifest: Path) -> None:
    all_tr = read_manifests([ct_manifest], SampleFilter(splits=["Tr"]))
    assert all_tr.num_rows == 6
    table = read_manifests(
        [ct_manifest], SampleFilter(splits=["Val"], classes=["liver", "aorta", "spleen"])
    )
    assert table["class_name"].to_pylist() == ["aorta", "liver", "spleen"]  # sorted
    sizes = dict(
        zip(all_tr["class_name"].to_pylist(), all_tr["voxel_count"].to_pylist(), strict=True)
    )
    cut = sorted(sizes.values())[3]
    big = read_manifests([ct_manifest], SampleFilter(splits=["Tr"], min_voxels=cut))
    assert sorted(big["class_name"].to_pylist()) == sorted(k for k, v in sizes.items() if v >= cut)
    assert read_manifests([ct_manifest], SampleFilter(cases=["nope"])).num_rows == 0


def test_duplicate_manifests_do_not_duplicate_rows(ct_manifest: Path) -> None:
    once = read_manifests([ct_manifest], SampleFilter())
    twice = read_manifests([ct_manifest, ct_manifest], SampleFilter())
    assert twice.num_rows == once.num_rows == 12


def test_wrong_schema_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"dataset": ["x"]}), path)
    with pytest.raises(SchemaError, match="missing columns"):
        read_manifests([path], SampleFilter())


def test_rows_are_numpy_arrays_not_python_lists(ct_manifest: Path) -> None:
    table = SampleTable.from_table(
        read_manifests([ct_manifest], SampleFilter()), ct_manifest.parent
    )
    for name, value in vars(table).items():
        if name != "root":
            assert isinstance(value, np.ndarray) and value.dtype != object, name
    assert table.bbox_min.shape == (12, 3)
    assert (table.bbox_max > table.bbox_min).all()


def _table(datasets: list[str], classes: list[str]) -> SampleTable:
    n = len(datasets)
    strings = np.array(["x"] * n)
    vec = np.zeros((n, 3), dtype=np.int64)
    return SampleTable(
        root=".",
        dataset=np.array(datasets),
        split=strings,
        case_id=strings,
        class_name=np.array(classes),
        modality=strings,
        image_path=strings,
        mask_path=strings,
        mask_sha256=strings,
        bbox_min=vec,
        bbox_max=vec + 1,
        shape=vec + 1,
        spacing=vec.astype(float),
    )


def test_sampling_balances_datasets_then_classes_then_cases() -> None:
    # dataset A: 3 rows of class a1 and 1 of a2; dataset B: 1 row of b1
    table = _table(["A", "A", "A", "A", "B"], ["a1", "a1", "a1", "a2", "b1"])
    w = sampling_weights(table)
    np.testing.assert_allclose(w, [1 / 12, 1 / 12, 1 / 12, 1 / 4, 1 / 2])
    w = sampling_weights(table, dataset_weights={"B": 3.0}, class_weights={"a2": 0.0})
    np.testing.assert_allclose(w, [1 / 12, 1 / 12, 1 / 12, 0, 3 / 4])


def test_sampling_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no manifest rows"):
        sampling_weights(_table([], []))


def test_manifest_hash_is_order_independent_and_content_sensitive(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    before = manifest_hash([a, b])
    assert before == manifest_hash([b, a])
    b.write_bytes(b"three")
    assert manifest_hash([a, b]) != before

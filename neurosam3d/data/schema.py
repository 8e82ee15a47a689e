"""The Parquet manifest, absent-class and quarantine schemas (documented in docs/manifest.md).

One manifest row per (dataset, split, case, class present). Tree paths are POSIX, relative to
the label-tree root (the ``--out`` folder of ``neurosam3d prepare``); raw paths are relative to
the dataset's raw folder. Geometry columns describe the image grid the mask lies on; voxel
indices follow the NIfTI array axes (i, j, k), not world coordinates.
"""

from __future__ import annotations

import pyarrow as pa

SPLITS = ("Tr", "Val", "Ts")

_vec3_int = pa.list_(pa.int32(), 3)
_vec3_float = pa.list_(pa.float64(), 3)

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # one of SPLITS
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),  # sanitised, = folder name
        pa.field("label_value", pa.int32()),  # value in the raw label map; null for per-class files
        pa.field("modality", pa.string(), nullable=False),  # "CT" or "MR" (primary channel)
        pa.field("channels", pa.list_(pa.string()), nullable=False),  # channel names, in order
        pa.field("category", pa.string(), nullable=False),  # docs/TAXONOMY.md, or "uncategorised"
        pa.field("image_path", pa.string(), nullable=False),  # primary channel
        pa.field("image_paths", pa.list_(pa.string()), nullable=False),  # one per channel
        pa.field("mask_path", pa.string(), nullable=False),  # binary uint8 mask on the image grid
        pa.field("voxel_count", pa.int64(), nullable=False),
        pa.field("volume_mm3", pa.float64(), nullable=False),
        pa.field("bbox_min", _vec3_int, nullable=False),  # inclusive voxel index (i, j, k)
        pa.field("bbox_max", _vec3_int, nullable=False),  # exclusive voxel index (i, j, k)
        pa.field("spacing", _vec3_float, nullable=False),  # mm along (i, j, k)
        pa.field("shape", _vec3_int, nullable=False),  # voxels along (i, j, k)
        pa.field(
            "mask_sha256", pa.string(), nullable=False
        ),  # of the mask file's bytes (sha256sum)
        pa.field("licence", pa.string(), nullable=False),
        pa.field("source_image", pa.string(), nullable=False),  # raw file, relative to raw root
        pa.field("source_label", pa.string(), nullable=False),  # raw file, relative to raw root
    ],
    metadata={b"neurosam3d.schema": b"manifest/1"},
)

#: Classes a case's label source declares but that have no voxel in it (no mask is written).
ABSENT_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("label_value", pa.int32()),  # null for per-class files
    ],
    metadata={b"neurosam3d.schema": b"absent/1"},
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("case_id", pa.string()),  # null when the problem is not tied to one case
        pa.field("class_name", pa.string()),  # null unless one class was rejected
        pa.field("path", pa.string(), nullable=False),  # the offending file, relative to raw root
        pa.field("problem", pa.string(), nullable=False),  # human-readable reason
        pa.field("kind", pa.string(), nullable=False),  # machine-readable reason code
    ],
    metadata={b"neurosam3d.schema": b"quarantine/1"},
)


#: One row per case of the training store (neurosam3d.store): where its entry lies, what it was
#: built from (the staleness check) and the case's intensity statistics (transforms.intensity).
STORE_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("format", pa.int32(), nullable=False),  # neurosam3d.store.layout.STORE_FORMAT
        pa.field("entry", pa.string(), nullable=False),  # folder of the case's store files
        pa.field("entry_bytes", pa.int64(), nullable=False),  # summed size of those files
        pa.field("image_path", pa.string(), nullable=False),  # the label-tree image it holds
        pa.field("image_bytes", pa.int64(), nullable=False),  # that file's size when built
        pa.field("shape", _vec3_int, nullable=False),  # voxels along (i, j, k)
        pa.field("class_name", pa.list_(pa.string()), nullable=False),  # classes of the case
        pa.field("mask_sha256", pa.list_(pa.string()), nullable=False),  # their masks, built from
        pa.field("label_codes", pa.list_(pa.list_(pa.int32())), nullable=False),  # per class
        pa.field("location_offsets", pa.list_(pa.int64()), nullable=False),  # per class + 1
        pa.field("window_low", pa.float64()),  # CT clip window (HU); null for MR
        pa.field("window_high", pa.float64()),
        pa.field("mean", pa.float64(), nullable=False),  # of the (clipped) voxels above zero
        pa.field("std", pa.float64(), nullable=False),  # 0: constant volume
        pa.field("minimum", pa.float64(), nullable=False),  # smallest (clipped) voxel
        # the (clipped) volume's values at transforms.intensity.PERCENTILES (percentile rule)
        pa.field("percentile_low", pa.float64(), nullable=False),
        pa.field("percentile_high", pa.float64(), nullable=False),
    ],
    metadata={b"neurosam3d.schema": b"store/2"},
)


class SchemaError(ValueError):
    """A table that does not match the documented schema."""


def check_schema(table: pa.Table, expected: pa.Schema, what: str) -> None:
    """Raise :class:`SchemaError` naming ``what`` unless ``table`` has exactly ``expected``'s fields."""
    got = {f.name: f.type for f in table.schema}
    want = {f.name: f.type for f in expected}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(n for n in set(want) & set(got) if got[n] != want[n])
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        if wrong:
            parts.append("wrong types " + ", ".join(f"{n}: {got[n]} != {want[n]}" for n in wrong))
        raise SchemaError(f"{what}: " + "; ".join(parts))

"""Store layout: file names, the encoding parameters and the error type.

Chosen by measurement (BENCHMARKS.md, "Training data"): LZ4 with byte shuffle in 64^3 chunks of
16^3 blocks for the image (a 128^3 crop decompresses only the blocks it touches; ZSTD is 25%
smaller but 2-3x slower to read), ZSTD for the label volume (tiny either way: mostly zero runs).
"""

from __future__ import annotations

from typing import Any

from neurosam3d.transforms.intensity import PERCENTILES

#: Bump when an unchanged label tree would give different store files or table rows
#: (2: the percentile-scaling statistics, ``percentile_low`` / ``percentile_high``).
STORE_FORMAT = 2
STORE_TABLE = "store.parquet"
IMAGE_FILE = "image.b2nd"
LABELS_FILE = "labels.b2nd"
LOCATIONS_FILE = "locations.npy"
ENTRY_FILES = (IMAGE_FILE, LABELS_FILE, LOCATIONS_FILE)
#: foreground voxels kept per class as training crop centres (nnU-Net keeps up to 10,000)
MAX_LOCATIONS = 2048
CHUNKS = (64, 64, 64)
BLOCKS = (16, 16, 16)
IMAGE_CODEC = "LZ4"
LABELS_CODEC = "ZSTD"
CLEVEL = 5


class StoreError(RuntimeError):
    """A missing or stale store entry; the message names the file and the command that fixes it."""


def entry_dir(dataset: str, split: str, case_id: str) -> str:
    """The case's entry folder, relative to the label-tree root (POSIX)."""
    return f"{dataset}/store{split}/{case_id}"


def as_key() -> dict[str, Any]:
    """Everything the store bytes depend on besides the tree (part of prepare's case key)."""
    return {
        "format": STORE_FORMAT,
        "max_locations": MAX_LOCATIONS,
        "chunks": list(CHUNKS),
        "blocks": list(BLOCKS),
        "codecs": [IMAGE_CODEC, LABELS_CODEC, CLEVEL],
        "percentiles": list(PERCENTILES),
    }


def fix_command(root: object) -> str:
    """The command that (re)builds the store of the label tree at ``root``."""
    return f"neurosam3d store build --root {root}"

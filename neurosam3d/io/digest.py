"""SHA-256 of a file, read in blocks (manifests' ``mask_sha256``, checkpoint fingerprints)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in blocks (constant memory for any size).

    Raises ``OSError`` (``FileNotFoundError``, ...) as :func:`open` does."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

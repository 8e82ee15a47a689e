"""A cheap change detector for raw folders: file names, sizes and mtimes, no byte read.

The data-version sensor compares this fingerprint between ticks (a TotalSegmentator-size folder
takes a directory walk, not an hour of hashing); the DVC hash, the data version itself, is
computed by the ``raw_dataset`` run the sensor starts, outside the tick.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def stat_fingerprint(folder: Path) -> str:
    """SHA-256 over every file's relative path, size and mtime (ns) under ``folder``, sorted;
    ``.dvcignore``d names (``__pycache__``, ``*.pyc``) are left out as DVC leaves them out."""
    entries: list[str] = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".pyc"):
                continue
            path = Path(base) / name
            stat = path.stat()
            entries.append(
                f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}"
            )
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode() + b"\n")
    return digest.hexdigest()

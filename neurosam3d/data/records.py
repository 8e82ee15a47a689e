"""Per-case records: what was prepared from which inputs, for incremental and crash-safe reruns.

A record ``<out>/.prepare/<dataset>/<case_id>.json.gz`` is written atomically *after* all of the
case's outputs. It holds the case's key (format version, parameters, layout description and the
size and SHA-256 of every raw input), its outputs (path -> size), manifest rows, absent classes
and quarantine rows. A rerun skips a case whose key is unchanged and whose outputs all still
exist with their recorded sizes; a run killed mid-case left no record, so the case is redone and
its outputs are overwritten with the same bytes. Records are gzip-compressed JSON without
timestamps: they are part of the deterministic output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import isal.igzip as igzip

from neurosam3d.io.atomic import atomic_write_bytes
from neurosam3d.io.digest import file_sha256
from neurosam3d.io.paths import safe_join

#: Bump when the output of an unchanged input changes (layout of the tree, encoding, columns).
FORMAT_VERSION = 1
RECORDS_DIR = ".prepare"
RECORD_SUFFIX = ".json.gz"


def records_dir(out_root: Path, dataset: str) -> Path:
    """Folder of a dataset's case records."""
    return safe_join(out_root, RECORDS_DIR, dataset)


#: What :func:`file_digest` learnt about a file: (size, mtime in ns, SHA-256 hex).
Digest = tuple[int, int, str]
#: Per-dataset cache of raw-input digests (``.dvcignore``d: machine-specific mtimes, no output).
DIGESTS_SUFFIX = ".digests.neurosam3d-cache"


def digests_path(out_root: Path, dataset: str) -> Path:
    """Where the raw-input digest cache of ``dataset`` lives (beside its records)."""
    return safe_join(out_root, RECORDS_DIR, f"{dataset}{DIGESTS_SUFFIX}")


def read_digests(path: Path) -> dict[str, Digest]:
    """The digest cache (absolute path -> digest); empty when absent or unreadable."""
    try:
        found = json.loads(path.read_text())
        return {str(k): (int(v[0]), int(v[1]), str(v[2])) for k, v in found.items()}
    except (FileNotFoundError, OSError, ValueError, TypeError, IndexError):
        return {}


def write_digests(path: Path, digests: dict[str, Digest]) -> None:
    text = json.dumps({k: list(v) for k, v in sorted(digests.items())}, separators=(",", ":"))
    atomic_write_bytes(path, text.encode(), durable=False)


def known_digest(path: Path, known: Digest | None) -> Digest:
    """``path``'s digest, reusing ``known`` without reading a byte when size and mtime (ns)
    still match it (the rule DVC and make use); else hashing the file."""
    stat = path.stat()
    if known is not None and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
        return known
    return stat.st_size, stat.st_mtime_ns, file_digest(path)[1]


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    return path.stat().st_size, file_sha256(path)


def record_path(out_root: Path, dataset: str, case_id: str) -> Path:
    """Where a case's record lives."""
    return safe_join(records_dir(out_root, dataset), f"{case_id}{RECORD_SUFFIX}")


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None if absent or unreadable (then the case is simply redone)."""
    try:
        return json.loads(igzip.decompress(path.read_bytes()))
    except (FileNotFoundError, OSError, EOFError, ValueError):
        return None


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a record atomically as gzip'd compact JSON with sorted keys (deterministic bytes)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    atomic_write_bytes(path, igzip.compress(text.encode(), compresslevel=3, mtime=0), durable=False)


def outputs_intact(out_root: Path, record: dict[str, Any]) -> bool:
    """Whether every output the record lists exists with its recorded size."""
    for rel, size in record.get("outputs", {}).items():
        try:
            if (out_root / rel).stat().st_size != size:
                return False
        except FileNotFoundError:
            return False
    return True

"""Atomic file writes: write to a temporary sibling, fsync, then ``os.replace``.

A reader (or a rerun after a crash or SIGKILL) sees either the old file or the complete new one,
never a partial file. Temporary files are named ``.<name>.tmp-<pid>-<random>`` in the target's
folder (same filesystem, so the rename is atomic) and are removed on failure.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TMP_MARKER = ".tmp-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    The caller writes the temporary path any way it likes (a library's ``save(path)``).
    On an exception the temporary file is deleted and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}{TMP_MARKER}{os.getpid()}-", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode(encoding))


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left behind by killed writers under ``folder``; return the count."""
    removed = 0
    for path in Path(folder).rglob(f".*{TMP_MARKER}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed

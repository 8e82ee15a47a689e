"""Atomic file writes: write to a temporary sibling, fsync, then ``os.replace``.

A reader (or a rerun after a crash or SIGKILL) sees either the old file or the complete new one,
never a partial file. Temporary files are named ``.<name>.tmp-<pid>-<random>`` in the target's
folder (same filesystem, so the rename is atomic) and are removed on failure. Files get the usual
permissions (``0o666`` less the umask), not ``mkstemp``'s 0600.

``durable=False`` skips the fsync: still atomic against a killed process (a rename never exposes
a partial file), only a power loss may lose the newest version. Data preparation writes thousands
of small masks this way, where an fsync (3-7 ms here) costs many times the compression.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TMP_MARKER = ".tmp-"


class OutputError(OSError):
    """Writing an output failed (disk full, read-only folder, permissions): a problem of where
    results go, not of the input. The message names the file and what to do; files already
    written are left intact, so a rerun continues where this one stopped."""

    def __init__(self, path: str | os.PathLike[str], errno_: int | None, strerror: str) -> None:
        super().__init__(errno_, strerror)
        self.path = Path(path)
        self.filename = str(path)

    def __str__(self) -> str:
        return (
            f"cannot write {self.path}: {self.strerror}. This is a problem of the output folder, "
            "not of the input: free space or fix the folder's permissions, then rerun (what was "
            "written is kept and reused)"
        )

    def __reduce__(self) -> tuple:  # cross-process (worker pools) with the same fields
        return (type(self), (self.path, self.errno, self.strerror))


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    The caller writes the temporary path any way it likes (a library's ``save(path)``).
    On an exception the temporary file is deleted and ``target`` is left untouched; an
    :class:`OSError` while creating, writing or renaming it is raised as :class:`OutputError`.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}{TMP_MARKER}{os.getpid()}-", dir=target.parent
        )
    except OSError as exc:
        raise OutputError(target, exc.errno, exc.strerror or str(exc)) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(target, exc.errno, exc.strerror or str(exc)) from exc
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> int:
    """Write ``data`` to ``target`` atomically; return the number of bytes written."""
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_bytes(data)
    return len(data)


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode(encoding))


def ensure_writable_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and check a file can be created in it; return it.

    Raises :class:`OutputError` naming the folder (read-only, permissions, not a folder) before
    any work is done, instead of failing half-way through.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".write-probe{TMP_MARKER}", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(folder, exc.errno, exc.strerror or str(exc)) from exc
    return folder


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left behind by killed writers under ``folder``; return the count."""
    removed = 0
    for path in Path(folder).rglob(f".*{TMP_MARKER}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed

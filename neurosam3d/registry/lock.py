"""An inter-process lock serialising registry writes (promotion, rollback) for one model.

MLflow has no compare-and-set on aliases, so "read the champion, gate, move the alias" must not
interleave between two promoters. An exclusive ``flock`` on a file does that for every process
that sees the same file: all processes on one machine, or all machines sharing the lock folder
(NFS/EFS). The embedded SQLite store keeps its locks beside the database.
"""

from __future__ import annotations

import fcntl
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def default_lock_dir(tracking_uri: str) -> Path:
    """Beside the SQLite database for ``sqlite:///`` URIs; a per-user folder otherwise."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite" and parsed.path not in ("", "/:memory:"):
        return Path(parsed.path).parent / "locks"
    return Path.home() / ".cache" / "neurosam3d" / "locks"


@contextmanager
def registry_lock(lock_dir: Path, model_name: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the exclusive lock for ``model_name``; raise ``TimeoutError`` after ``timeout_s``."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", model_name) + ".lock")
    deadline = time.monotonic() + timeout_s
    with path.open("a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"registry lock {path} held for over {timeout_s:.0f} s by another promotion"
                    ) from None
                time.sleep(0.05)
        log.debug("acquired %s", path)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

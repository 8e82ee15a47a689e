"""An inter-process lock serialising registrations of one model (create-or-reuse a version).

Moving aliases (promotion, rollback, rescoring) does not use it: the registry arbitrates those
(:mod:`neurosam3d.registry.arbiter`). Registration only needs it to avoid two versions of one
checkpoint: an exclusive ``flock`` on a file, for every process that sees the same file. The
folder is ``$NEUROSAM3D_LOCK_DIR`` when set; else the embedded SQLite store keeps its locks
beside the database, and other stores use a per-user folder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def default_lock_dir(tracking_uri: str) -> Path:
    """``$NEUROSAM3D_LOCK_DIR``; else beside the SQLite database for ``sqlite:///`` URIs; else a
    per-user folder."""
    if os.environ.get("NEUROSAM3D_LOCK_DIR"):
        return Path(os.environ["NEUROSAM3D_LOCK_DIR"])
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

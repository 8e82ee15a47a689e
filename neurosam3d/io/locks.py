"""A non-blocking exclusive file lock: a second writer is refused at once, never interleaved.

``flock`` on a lock file beside the data; the kernel releases it when the holder exits (even
on SIGKILL), so no stale lock survives a crash. Meant for one host's processes (on network
filesystems ``flock`` is unreliable: arbitrate there with the shared service instead).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_or_refuse(path: Path, refusal: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` body; when
    another process holds it, raise ``refusal()`` at once instead of waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refusal() from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

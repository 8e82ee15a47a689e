"""Writing prepared files: atomic against a killed process, without fsync.

A case writes one image and up to a hundred masks. ``neurosam3d.io.atomic.atomic_write_bytes``
fsyncs every file, which on this project's disks costs 3-7 ms a file, many times the igzip
compression of a mask (0.2 ms); over a TotalSegmentator-sized dataset that would be most of the
run. A killed process cannot leave a partial file behind a rename, so tree files and case records
are written to a temporary sibling (the same ``.<name>.tmp-<pid>-...`` names, removed by
``remove_stale_temporaries``) and renamed without fsync. After a power loss a lost record only
means the case is redone, and a record whose outputs are missing or of another size is not
trusted; the Parquet tables are rebuilt from the records by every run. Files get the usual
permissions (umask), unlike ``mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from neurosam3d.io.atomic import TMP_MARKER


def write_replace(target: Path, data: bytes) -> int:
    """Write ``data`` to ``target`` via a temporary sibling and ``os.replace``; return its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)

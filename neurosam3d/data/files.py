"""Writing label-tree files: atomic against a killed process, without a per-file fsync.

A case writes one image and up to a hundred masks. ``neurosam3d.io.atomic.atomic_write_bytes``
fsyncs every file, which on this project's disks costs about 3 ms a file, several times the
igzip compression of a mask; over a TotalSegmentator-sized dataset that is most of the run. A
killed process cannot leave a partial file behind a rename, so the tree files are written to a
temporary sibling (the same ``.<name>.tmp-<pid>-...`` names, removed by
``remove_stale_temporaries``) and renamed without fsync. Against power loss the case record,
written afterwards with a full fsync, lists every output's size, and a rerun redoes any case
whose outputs are missing or of another size.
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

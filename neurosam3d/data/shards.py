"""Case shards: one dataset prepared by several processes or machines at once, each its own cases.

A shard is ``(I, N)``, 1 <= I <= N, written ``I/N`` (``neurosam3d prepare --shard 2/4``; the same
spelling as ``neurosam3d evaluate --shard``). Case ``c`` belongs to shard
``sha256("shard:" + c) mod N + 1`` (:func:`shard_of`): the assignment depends on the case id and
N only, so a case never moves to another shard when the raw folder gains or loses other cases
(a sorted-index rule would move every case after the new one), and shards are balanced to within
sampling noise on large datasets. The prefix keeps it independent of the ``val_fraction`` hash
(``seed:case_id``), so Val cases are not concentrated in one shard.

A shard of N > 1 is prepared into its own root (``--out``; the pipeline's is
``work/data/datasets/<dataset>-<I>of<N>``), so two shards never write the same file. Before any
output it claims the folder (:func:`claim_path`: another shard is refused there, a rerun of the
same shard continues), and after its tables it writes the record
``manifests/<DATASET>_shard.json`` (:class:`ShardRecord`): which shard it is, its case ids, and
the number and SHA-256 of the case ids of the whole dataset as this shard discovered them.
``neurosam3d combine`` (:mod:`neurosam3d.data.combine`) merges the N shards of a dataset into
the dataset's one set of tables and refuses a missing, repeated, unfinished or stale shard. An
unsharded preparation (``1/1``) writes neither: its output is what it always was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from neurosam3d.data.records import RECORDS_DIR
from neurosam3d.io.atomic import atomic_write_bytes
from neurosam3d.io.paths import safe_join

#: ``(I, N)``: shard I of N, 1-based.
Shard = tuple[int, int]
WHOLE: Shard = (1, 1)
#: ``manifests/<DATASET>`` + this: the shard record of a dataset prepared in N > 1 shards.
RECORD_SUFFIX = "_shard.json"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (1 <= I <= N) -> ``(I, N)``; ``ValueError`` naming the problem otherwise."""
    head, sep, tail = str(text).partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        raise ValueError(f"shard {text!r}: expected I/N, e.g. 1/4") from None
    if not sep or count < 1 or not 1 <= index <= count:
        raise ValueError(f"shard {text!r}: expected I/N with 1 <= I <= N")
    return index, count


def format_shard(shard: Shard) -> str:
    """``(2, 4)`` -> ``"2/4"``."""
    return f"{shard[0]}/{shard[1]}"


def shard_of(case_id: str, count: int) -> int:
    """The shard (1..``count``) of ``case_id``: a stable hash, independent of the other cases."""
    digest = hashlib.sha256(f"shard:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def in_shard(case_id: str | None, shard: Shard) -> bool:
    """Whether a case (or a dataset-level entry, ``case_id`` None: shard 1) belongs to ``shard``."""
    index, count = shard
    if count == 1:
        return True
    return (shard_of(case_id, count) if case_id is not None else 1) == index


def case_list_digest(case_ids: Iterable[str]) -> str:
    """SHA-256 over the sorted case ids, one per line (what every shard must agree on)."""
    digest = hashlib.sha256()
    for case_id in sorted(case_ids):
        digest.update(case_id.encode() + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardRecord:
    """What one shard of a dataset prepared: what ``neurosam3d combine`` checks across shards.

    ``cases``: this shard's case ids (sorted; prepared and rejected); ``dataset_cases`` and
    ``dataset_cases_sha256``: the count and :func:`case_list_digest` of every case id the shard's
    discovery found (all shards), so shards that saw different raw folders disagree.
    """

    dataset: str
    shard: str
    assignment: str
    cases: list[str]
    dataset_cases: int
    dataset_cases_sha256: str

    @property
    def index(self) -> int:
        return parse_shard(self.shard)[0]

    @property
    def count(self) -> int:
        return parse_shard(self.shard)[1]


ASSIGNMENT = "sha256('shard:' + case_id) mod N + 1"


def claim_path(out_root: Path, dataset: str) -> Path:
    """The claim ``.prepare/<DATASET>.shard`` (text ``I/N``) a shard writes into its root before
    any output: the folder is that shard's (a rerun continues it, another shard is refused)."""
    return safe_join(out_root, RECORDS_DIR, f"{dataset}.shard")


def shard_record_path(manifests: Path, dataset: str) -> Path:
    """The shard record of ``dataset`` in a root's ``manifests/`` folder."""
    return manifests / f"{dataset}{RECORD_SUFFIX}"


def write_shard_record(path: Path, record: ShardRecord) -> None:
    """Write ``record`` atomically (sorted keys, no timestamp: the same shard, the same bytes)."""
    text = json.dumps(asdict(record), indent=1, sort_keys=True) + "\n"
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data, durable=False)


def read_shard_record(path: Path) -> ShardRecord:
    """The shard record at ``path``; ``ValueError`` naming the file when it is not one."""
    try:
        found = json.loads(path.read_text())
        record = ShardRecord(**found)
        parse_shard(record.shard)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable shard record ({exc})") from exc
    return record

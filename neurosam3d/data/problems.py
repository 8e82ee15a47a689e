"""Rejected inputs: the reason codes of the quarantine table and the exception that carries them.

Every rejection becomes one :class:`Problem` (one quarantine row, docs/manifest.md). A problem
with a ``class_name`` rejects that class only; one without rejects the whole case (or, with no
``case_id``, a dataset-level entry such as a duplicate case id); ``unknown_label_value`` is a
report: the case's known classes are still written.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from neurosam3d.io.nifti import NiftiError


class Kind(enum.StrEnum):
    """Stable, machine-readable reason codes (the quarantine table's ``kind`` column)."""

    TRUNCATED_GZIP = "truncated_gzip"
    NOT_NIFTI = "not_nifti"
    MISSING_FILE = "missing_file"
    BAD_IMAGE = "bad_image"
    NON_FINITE_IMAGE = "non_finite_image"
    GRID_MISMATCH = "grid_mismatch"
    LABEL_4D = "label_4d"
    NON_INTEGER_LABEL = "non_integer_label"
    UNKNOWN_LABEL_VALUE = "unknown_label_value"
    UNKNOWN_CLASS_FILE = "unknown_class_file"
    EMPTY_LABEL = "empty_label"
    BAD_CLASS_NAME = "bad_class_name"
    CLASS_NAME_COLLISION = "class_name_collision"
    BAD_CASE_ID = "bad_case_id"
    DUPLICATE_CASE = "duplicate_case"
    PROCESSING_ERROR = "processing_error"
    TOO_LARGE = "too_large"
    UNREADABLE_FILE = "unreadable_file"
    WORKER_DIED = "worker_died"
    OUTSIDE_ROOT = "outside_root"


@dataclass(frozen=True)
class Problem:
    """One quarantine row. ``path`` is POSIX, relative to the dataset's raw root."""

    dataset: str
    case_id: str | None
    class_name: str | None
    path: str
    problem: str
    kind: str

    def as_row(self) -> dict[str, str | None]:
        return asdict(self)

    def sort_key(self) -> tuple[str, str, str, str, str, str]:
        """Order by dataset, case, class, path, kind, problem (missing ids first)."""
        return (
            self.dataset,
            self.case_id or "",
            self.class_name or "",
            self.path,
            self.kind,
            self.problem,
        )


class CaseRejected(Exception):
    """Raised while processing a case whose input cannot be used; carries the quarantine row."""

    def __init__(self, kind: Kind, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.kind = kind
        self.path = path
        self.problem = problem


#: :attr:`NiftiError.reason` -> quarantine reason code
_NIFTI_KINDS = {
    "missing": Kind.MISSING_FILE,
    "unreadable": Kind.UNREADABLE_FILE,
    "gzip": Kind.TRUNCATED_GZIP,
    "truncated": Kind.TRUNCATED_GZIP,
    "non_finite": Kind.NON_FINITE_IMAGE,
    "too_large": Kind.TOO_LARGE,
}


def nifti_error_kind(error: NiftiError) -> Kind:
    """Reason code of a :class:`NiftiError` from ``neurosam3d.io.nifti.load_nifti``."""
    return _NIFTI_KINDS.get(error.reason, Kind.NOT_NIFTI)

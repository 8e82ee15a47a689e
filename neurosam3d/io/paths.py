"""Names that become paths: an allow-list for single names and a join that cannot leave its root.

Dataset names, case ids and class names from configs, dataset.json files and manifests end up
as folder and file names. :func:`check_name` accepts only :data:`SAFE_NAME` (letters, digits,
``.``, ``_``, ``-``, starting with a letter or digit: no separator, no ``..``, not hidden).
:func:`safe_join` joins relative parts (which may hold ``/``, e.g. a manifest's ``image_path``)
under a root and raises :class:`ValueError` naming the part that would lead outside it. The check
is lexical (``..`` and absolute parts), so symbolic links inside the root (a DVC cache in
``symlink`` mode) keep working.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

#: A name that is safe as one folder or file name on every platform we write to.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_safe_name(value: object) -> bool:
    """Whether ``value`` is a string matching :data:`SAFE_NAME`."""
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


def check_name(value: object, what: str = "name") -> str:
    """``value`` if it is a safe single name, else :class:`ValueError` saying what and why."""
    if not is_safe_name(value):
        raise ValueError(
            f"{what} {value!r} is not a safe file name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (no '/', no '..')"
        )
    return str(value)


def safe_join(root: str | os.PathLike[str], *parts: str | os.PathLike[str]) -> Path:
    """``root / part / ...``, raising :class:`ValueError` if a part would lead outside ``root``.

    A part may hold several components (``"DS/imagesTr/c1.nii.gz"``) but must be relative and,
    together with the parts before it, never climb above ``root`` (``..``). Both POSIX and
    Windows separators and drive/absolute forms are rejected.
    """
    depth = 0
    for part in parts:
        text = os.fspath(part)
        if not text or "\x00" in text:
            raise ValueError(f"path part {text!r} is empty or holds a NUL byte (under {root})")
        if PurePosixPath(text).is_absolute() or PureWindowsPath(text).anchor:
            raise ValueError(f"path part {text!r} is absolute; expected a path under {root}")
        for component in re.split(r"[/\\]", text):
            if component in ("", "."):
                continue
            depth += -1 if component == ".." else 1
            if depth < 0:
                raise ValueError(f"path part {text!r} leads outside {root}")
    return Path(root).joinpath(*parts)

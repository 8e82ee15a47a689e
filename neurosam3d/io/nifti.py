"""Deterministic, fast NIfTI reading and writing.

Writing: nibabel serialises the image to bytes, ISA-L's igzip compresses them (3-4x faster than
Python's zlib, ENVIRONMENT.md) with ``mtime=0`` so the same array and header always give the same
bytes and therefore the same DVC hash; the file is written atomically. The result is an ordinary
``.nii.gz`` that nibabel, SimpleITK and ITK-SNAP read.

Reading: :func:`load_nifti` decompresses with igzip as well and turns every failure (missing file,
truncated gzip, not NIfTI, NaN/inf) into :class:`NiftiError` naming the file and the problem.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import isal.igzip as igzip
import nibabel as nib
import numpy as np

from neurosam3d.io.atomic import atomic_write_bytes

#: igzip level 1-3; 3 is its best ratio and still several times faster than zlib level 6.
DEFAULT_COMPRESSLEVEL = 3


class NiftiError(ValueError):
    """A file that is not a usable NIfTI image; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def nifti_bytes(image: nib.Nifti1Image, *, compresslevel: int = DEFAULT_COMPRESSLEVEL) -> bytes:
    """Serialise ``image`` to deterministic gzip-compressed NIfTI-1 bytes (no timestamp)."""
    return igzip.compress(image.to_bytes(), compresslevel=compresslevel, mtime=0)


def save_nifti(
    image: nib.Nifti1Image,
    path: str | os.PathLike[str],
    *,
    compresslevel: int = DEFAULT_COMPRESSLEVEL,
) -> int:
    """Write ``image`` to ``path`` (``.nii.gz``) atomically and deterministically; return bytes written."""
    data = nifti_bytes(image, compresslevel=compresslevel)
    atomic_write_bytes(path, data)
    return len(data)


def make_image(
    data: np.ndarray, affine: np.ndarray, *, like: nib.Nifti1Image | None = None
) -> nib.Nifti1Image:
    """Build a NIfTI-1 image of ``data`` (array dtype kept) on ``affine``.

    ``like`` copies units and intent-free header fields (xyzt units, descrip cleared) from a source
    header so that spacing units survive; sform and qform are both set to ``affine`` (code 1,
    scanner) so that every reader agrees on the geometry.
    """
    header = nib.Nifti1Header()
    if like is not None:
        header.set_xyzt_units(*like.header.get_xyzt_units())
    image = nib.Nifti1Image(np.asarray(data), affine, header)
    image.set_data_dtype(np.asarray(data).dtype)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    return image


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise NiftiError(path, "file does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return igzip.decompress(raw)
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise NiftiError(path, f"corrupt or truncated gzip stream ({exc})") from exc
    return raw


def load_nifti(path: str | os.PathLike[str], *, check_finite: bool = False) -> nib.Nifti1Image:
    """Load a ``.nii`` or ``.nii.gz`` file fully into memory.

    Raises :class:`NiftiError` for a missing file, a truncated or corrupt gzip stream, bytes that
    are not NIfTI-1/2, or (with ``check_finite``) NaN/inf voxels. The returned image's data array
    is already decoded (``np.asanyarray(image.dataobj)`` costs no further I/O).
    """
    path = Path(path)
    raw = _read_bytes(path)
    try:
        try:
            image = nib.Nifti1Image.from_bytes(raw)
        except Exception:
            image = nib.Nifti2Image.from_bytes(raw)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:
        raise NiftiError(path, f"not a readable NIfTI image ({type(exc).__name__}: {exc})") from exc
    if check_finite and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise NiftiError(path, f"{bad} voxels are NaN or infinite")
    return type(image)(data, image.affine, image.header)


def as_3d(
    image: nib.Nifti1Image,
    path: str | os.PathLike[str],
    *,
    channel: int | None = None,
    hint: str = "select one channel",
) -> nib.Nifti1Image:
    """``image`` as a 3D volume on the same affine.

    Singleton axes after the third are dropped (``X x Y x Z x 1``). A multi-channel image
    (``X x Y x Z x C``, C > 1, e.g. an MSD 4D image) needs ``channel`` (0 to C - 1), which selects
    that volume. Anything else raises :class:`NiftiError` naming ``path``, the shape and ``hint``.
    """
    shape = tuple(int(n) for n in image.shape)
    if len(shape) < 3:
        raise NiftiError(path, f"image has shape {shape}; expected a 3D volume")
    extra = [(axis, n) for axis, n in enumerate(shape[3:], start=3) if n != 1]
    if not extra:
        if channel not in (None, 0):
            raise NiftiError(path, f"image of shape {shape} has one channel; no channel {channel}")
        if len(shape) == 3:
            return image
        data = np.asanyarray(image.dataobj).reshape(shape[:3])
        return make_image(data, image.affine, like=image)
    if len(extra) > 1:
        raise NiftiError(
            path, f"image has shape {shape}: more than one non-singleton axis after the third"
        )
    axis, count = extra[0]
    if channel is None:
        raise NiftiError(
            path,
            f"image has shape {shape}: {count} channels on axis {axis} (multi-channel or 4D); "
            f"{hint} (0-{count - 1})",
        )
    if not 0 <= channel < count:
        raise NiftiError(path, f"image has shape {shape}: no channel {channel} (0-{count - 1})")
    data = np.take(np.asanyarray(image.dataobj), channel, axis=axis).reshape(shape[:3])
    return make_image(data, image.affine, like=image)


def voxel_spacing(image: nib.Nifti1Image) -> tuple[float, float, float]:
    """Voxel edge lengths in mm along the array's first three axes, from the affine."""
    return tuple(float(x) for x in np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0)))

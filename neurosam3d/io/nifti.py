"""Deterministic, fast NIfTI reading and writing.

Writing: nibabel serialises the image to bytes, ISA-L's igzip compresses them (3-4x faster than
Python's zlib, ENVIRONMENT.md) with ``mtime=0`` so the same array and header always give the same
bytes and therefore the same DVC hash; the file is written atomically. The result is an ordinary
``.nii.gz`` that nibabel, SimpleITK and ITK-SNAP read.

Reading: :func:`load_nifti` decompresses with igzip as well and turns every failure (missing file,
truncated gzip, not NIfTI, NaN/inf, too large) into :class:`NiftiError` naming the file and the
problem. Reads are bounded: the header is decoded first, and its claimed size is checked against
the file (a gzip stream cannot expand more than :data:`MAX_DEFLATE_RATIO` times; an uncompressed
file must hold its data) and against :class:`ReadLimits` before any voxel is decompressed; then
exactly the claimed bytes are decompressed, never more. Peak memory is the decoded array plus,
for scaled images (``scl_slope``), its scaled copy.
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import isal.igzip as igzip
import nibabel as nib
import numpy as np

from neurosam3d.io.atomic import atomic_write_bytes

#: igzip level 1-3; 3 is its best ratio and still several times faster than zlib level 6.
DEFAULT_COMPRESSLEVEL = 3


#: Deflate's largest possible expansion (about 1032:1): a ``.nii.gz`` whose header claims more
#: than this many times its file size cannot hold its data (a "memory bomb" header).
MAX_DEFLATE_RATIO = 1100
#: Header sizes of NIfTI-1 and NIfTI-2 (the first four bytes of the file, either byte order).
_HEADER_BYTES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}


class NiftiError(ValueError):
    """A file that is not a usable NIfTI image; the message names the file and the problem.

    ``reason`` is a stable code: ``missing``, ``unreadable`` (permissions, I/O error), ``gzip``,
    ``not_nifti``, ``truncated``, ``non_finite``, ``too_large`` or ``shape``.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, reason: str = "shape") -> None:
        self.path = Path(path)
        self.problem = problem
        self.reason = reason
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class ReadLimits:
    """The largest image :func:`load_nifti` decodes: voxels and decoded bytes (of all channels).

    The defaults admit real whole-body and high-resolution CT (1024 x 1024 x 1024 voxels, 4 GiB
    of float32) and refuse anything larger before allocating it. Override them per call or for
    a process with ``NEUROSAM3D_MAX_VOXELS`` / ``NEUROSAM3D_MAX_BYTES``.
    """

    max_voxels: int = 1024**3
    max_bytes: int = 4 * 1024**3

    @classmethod
    def from_env(cls) -> ReadLimits:
        """The defaults, overridden by the environment variables above where set."""
        default = cls()
        return cls(
            max_voxels=_env_int("NEUROSAM3D_MAX_VOXELS", default.max_voxels),
            max_bytes=_env_int("NEUROSAM3D_MAX_BYTES", default.max_bytes),
        )


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(float(value))
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    return number


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


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """The file's byte stream (decompressing when it starts with the gzip magic) and whether it
    is compressed; both the stream and the file are closed on exit."""
    if not path.is_file():
        raise NiftiError(path, "file does not exist", "missing")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise NiftiError(path, f"cannot be read: {exc.strerror or exc}", "unreadable") from exc
    with handle:
        compressed = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        if not compressed:
            yield handle, False
            return
        with igzip.IGzipFile(fileobj=handle, mode="rb") as stream:
            yield stream, True


def _read_exactly(stream: BinaryIO, count: int, path: Path, what: str) -> bytearray:
    """``count`` bytes of ``stream`` into one buffer; a shorter stream is an error."""
    buffer = bytearray(count)
    view, done = memoryview(buffer), 0
    try:
        while done < count:
            got = stream.readinto(view[done:])
            if not got:
                raise NiftiError(
                    path,
                    f"truncated: {what} needs {count} bytes, the file holds {done}",
                    "truncated",
                )
            done += got
    except (OSError, EOFError, zlib.error) as exc:
        raise NiftiError(path, f"corrupt or truncated gzip stream ({exc})", "gzip") from exc
    return buffer


def _header(path: Path, stream: BinaryIO) -> nib.Nifti1Header:
    head = _read_exactly(stream, 4, path, "the header")
    size = int(np.frombuffer(head, "<i4")[0])
    if size not in _HEADER_BYTES:
        size = int(np.frombuffer(head, ">i4")[0])
    if size not in _HEADER_BYTES:
        raise NiftiError(
            path,
            "not a readable NIfTI image (its header size field is neither NIfTI-1 nor NIfTI-2)",
            "not_nifti",
        )
    raw = bytes(head + _read_exactly(stream, size - 4, path, "the header"))
    try:
        return _HEADER_BYTES[size].from_fileobj(io.BytesIO(raw), check=True)
    except Exception as exc:
        raise NiftiError(
            path, f"not a readable NIfTI header ({type(exc).__name__}: {exc})", "not_nifti"
        ) from exc


def _check_claim(
    path: Path, header: nib.Nifti1Header, compressed: bool, limits: ReadLimits
) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset the header claims, refused when they cannot be true or are
    larger than ``limits``."""
    shape = tuple(int(n) for n in header.get_data_shape())
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset())
    voxels = int(np.prod(shape, dtype=np.float64)) if shape else 0
    nbytes = voxels * dtype.itemsize
    claim = f"header claims {'x'.join(map(str, shape))} voxels of {dtype.name} ({nbytes:,} bytes)"
    if voxels > limits.max_voxels:
        raise NiftiError(
            path,
            f"{claim}: more than the limit of {limits.max_voxels:,} voxels "
            "(NEUROSAM3D_MAX_VOXELS raises it)",
            "too_large",
        )
    if nbytes > limits.max_bytes:
        raise NiftiError(
            path,
            f"{claim}: more than the limit of {limits.max_bytes:,} bytes "
            "(NEUROSAM3D_MAX_BYTES raises it)",
            "too_large",
        )
    size = path.stat().st_size
    if compressed and offset + nbytes > MAX_DEFLATE_RATIO * size:
        raise NiftiError(
            path,
            f"{claim}, more than a {size:,}-byte gzip file can hold: the data is missing",
            "truncated",
        )
    if not compressed and offset + nbytes > size:
        raise NiftiError(path, f"{claim}, but the file has only {size:,} bytes", "truncated")
    return shape, dtype, offset


def _decode(path: Path, limits: ReadLimits) -> tuple[nib.Nifti1Header, np.ndarray]:
    """The header and the (unscaled) data array, reading no more than the header claims."""
    with _open(path) as (stream, compressed):
        header = _header(path, stream)
        shape, dtype, offset = _check_claim(path, header, compressed, limits)
        read = len(header.binaryblock)
        if offset > read:  # header extensions: not needed for the image
            _read_exactly(stream, offset - read, path, "the header extensions")
        count = int(np.prod(shape)) if shape else 0
        buffer = _read_exactly(stream, count * dtype.itemsize, path, "the image data")
    data = np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape, order="F")
    return header, data


def load_nifti(
    path: str | os.PathLike[str],
    *,
    check_finite: bool = False,
    limits: ReadLimits | None = None,
) -> nib.Nifti1Image:
    """Load a ``.nii`` or ``.nii.gz`` file fully into memory, within ``limits``.

    Raises :class:`NiftiError` for a missing file, a truncated or corrupt gzip stream, bytes that
    are not NIfTI-1/2, a header that claims more data than the file can hold or more than
    ``limits`` (default :meth:`ReadLimits.from_env`) allow, or (with ``check_finite``) NaN/inf
    voxels. The returned image's data array is already decoded and scaled as nibabel scales it
    (``scl_slope``/``scl_inter``); ``np.asanyarray(image.dataobj)`` costs no further I/O.
    """
    path = Path(path)
    header, raw = _decode(path, limits or ReadLimits.from_env())
    try:
        slope, inter = header.get_slope_inter()
        data = nib.volumeutils.apply_read_scaling(raw, slope, inter)
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        image = image_class(data, header.get_best_affine(), header)
    except Exception as exc:
        raise NiftiError(
            path, f"not a readable NIfTI image ({type(exc).__name__}: {exc})", "not_nifti"
        ) from exc
    if check_finite and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise NiftiError(path, f"{bad} voxels are NaN or infinite", "non_finite")
    return image


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

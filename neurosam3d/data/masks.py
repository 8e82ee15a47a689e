"""Binary masks from a label map in one pass, and their fast deterministic encoding.

One pass over the label map (``scipy.ndimage.find_objects``) gives every value's bounding box;
each mask is then built, and its voxels counted, only inside its box. All masks of a
case share one NIfTI header, so it is serialised once; each mask is then streamed through one
gzip compressor (header, then the voxels straight from the array's memory), which is an order of
magnitude faster than joining them into one buffer first. Decompressed, the bytes are exactly
nibabel's serialisation of the same image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import nibabel as nib
import numpy as np
from isal import isal_zlib
from scipy import ndimage

from neurosam3d.data.labels import ClassSpec
from neurosam3d.io.nifti import make_image

#: igzip level for masks: on sparse binary masks level 1 gives ~45% smaller files than level 3
#: and is ~8x faster (measured on the TotalSegmentator sample; level 3 suits images better).
MASK_COMPRESSLEVEL = 1
#: find_objects allocates one entry per value up to the largest; beyond this use np.unique.
_DENSE_MAX = 1 << 16


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of every non-zero value of ``labels`` (I, J, K) integer, in one pass.

    Returns {value: (slice_i, slice_j, slice_k)}, half-open voxel indices. Voxel counts are
    taken later from each class's crop, so the full volume is scanned only once here.
    """
    high = int(labels.max()) if labels.size else 0
    low = int(labels.min()) if labels.size else 0
    if low >= 0 and high < _DENSE_MAX:
        boxes = ndimage.find_objects(labels, max_label=high) if high else []
        return {v: box for v, box in enumerate(boxes, 1) if box is not None}
    found = {}
    for value in np.unique(labels).tolist():
        if value:
            where = np.nonzero(labels == value)
            found[value] = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    return found


def union_box(boxes: list[tuple[slice, ...]]) -> tuple[slice, slice, slice]:
    """Smallest half-open box holding every box in ``boxes``."""
    return tuple(  # type: ignore[return-value]
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)
    )


def class_masks(
    labels: np.ndarray, classes: list[tuple[ClassSpec, tuple[slice, slice, slice]]]
) -> Iterator[tuple[ClassSpec, tuple[slice, slice, slice], np.ndarray, int]]:
    """Yield (class, box, binary uint8 mask (I, J, K) Fortran order, voxel count) per class.

    Only each class's box is compared. One buffer serves every class: a yielded mask is valid
    until the next item is requested (encode it first).
    """
    mask = np.zeros(labels.shape, dtype=np.uint8, order="F")
    for spec, box in classes:
        inside = mask[box].view(np.bool_)  # written in place: no temporary per class
        if len(spec.values) == 1:
            np.equal(labels[box], spec.values[0], out=inside)
        else:
            inside[...] = np.isin(labels[box], spec.values)
        yield spec, box, mask, int(np.count_nonzero(inside))
        inside[...] = False


def box_of(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Half-open bounding box of the non-zero voxels of a uint8 mask, or None if empty."""
    found = ndimage.find_objects(mask, max_label=1)
    return found[0] if found and found[0] is not None else None


class MaskEncoder:
    """Deterministic ``.nii.gz`` bytes of uint8 masks on one grid (gzip mtime=0, igzip)."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        affine: np.ndarray,
        like: nib.Nifti1Image,
        compresslevel: int = MASK_COMPRESSLEVEL,
    ) -> None:
        empty = np.zeros(shape, dtype=np.uint8, order="F")
        full = make_image(empty, affine, like=like).to_bytes()
        self._prefix = full[: len(full) - empty.size]
        self._shape = shape
        self._level = compresslevel

    def encode(self, mask: np.ndarray) -> bytes:
        """Compressed NIfTI bytes of ``mask`` (shape and dtype uint8 as given to the encoder)."""
        if mask.shape != self._shape or mask.dtype != np.uint8:
            raise ValueError(
                f"mask {mask.shape} {mask.dtype} does not fit grid {self._shape} uint8"
            )
        voxels = np.asfortranarray(mask).T  # C-contiguous view of the Fortran-order voxels
        return gzip_chunks([self._prefix, memoryview(voxels)], self._level)


def gzip_chunks(chunks: Iterable[bytes | memoryview], level: int) -> bytes:
    """gzip (no timestamp, deterministic) of the concatenation of ``chunks``, never joining them."""
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
    return b"".join([*(compressor.compress(chunk) for chunk in chunks), compressor.flush()])


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()

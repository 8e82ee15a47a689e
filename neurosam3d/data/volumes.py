"""Loading and validating the arrays of one case: image channels, label maps, per-class files.

Every failure raises :class:`~neurosam3d.data.problems.CaseRejected` with a reason code and the
offending file (relative to the raw root). Arrays are returned as NIfTI decodes them, (I, J, K)
in Fortran order, so that writing them back costs no transpose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from neurosam3d.data.problems import CaseRejected, Kind, nifti_error_kind
from neurosam3d.io.images import load_image
from neurosam3d.io.nifti import NiftiError


def read_nifti(path: Path, relative: Callable[[Path], str]) -> nib.Nifti1Image:
    """A raw image (NIfTI, or MetaImage/NRRD as nnU-Net accepts them; see
    :func:`neurosam3d.io.images.load_image`) with its errors turned into :class:`CaseRejected`."""
    try:
        return load_image(path)
    except NiftiError as exc:
        raise CaseRejected(nifti_error_kind(exc), relative(path), exc.problem) from exc


def squeeze_to_3d(data: np.ndarray, rel: str, kind: Kind, what: str) -> np.ndarray:
    """Drop trailing singleton axes; anything that is not then 3D is rejected as ``kind``."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise CaseRejected(kind, rel, f"{what} has shape {data.shape}; expected a 3D volume")
    return data


def native_array(data: np.ndarray, image: nib.Nifti1Image) -> np.ndarray:
    """The image array in its stored dtype.

    Without intensity scaling NIfTI decodes to the stored dtype already. With ``scl_slope``/
    ``scl_inter`` (decoded as float) integral values go to the smallest signed integer type that
    holds them and others to float32, instead of float64.
    """
    stored = image.header.get_data_dtype()
    if data.dtype == stored:
        return data
    if np.all(np.mod(data, 1) == 0):
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if data.min() >= info.min and data.max() <= info.max:
                return data.astype(dtype, order="F")
    return data.astype(np.float32, order="F")


def check_finite(data: np.ndarray, rel: str) -> None:
    """Reject an image with NaN or infinite voxels."""
    if np.issubdtype(data.dtype, np.floating):
        bad = data.size - int(np.count_nonzero(np.isfinite(data)))
        if bad:
            raise CaseRejected(
                Kind.NON_FINITE_IMAGE, rel, f"{bad} image voxels are NaN or infinite"
            )


def integer_labels(data: np.ndarray, rel: str) -> np.ndarray:
    """A label array as integers: floats must hold whole numbers; small ranges become uint8/16.

    (I, J, K) any numeric dtype -> (I, J, K) integer dtype, Fortran order kept.
    """
    if np.issubdtype(data.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            not_whole = ~(np.mod(data, 1) == 0)  # NaN and inf are not whole either
        bad = int(np.count_nonzero(not_whole))
        if bad:
            examples = np.unique(data[not_whole])[:5].tolist()
            raise CaseRejected(
                Kind.NON_INTEGER_LABEL,
                rel,
                f"{bad} label voxels are not whole numbers (e.g. {examples}); "
                "labels must be integer class values",
            )
    elif not np.issubdtype(data.dtype, np.integer) and data.dtype != np.bool_:
        raise CaseRejected(Kind.NON_INTEGER_LABEL, rel, f"label dtype {data.dtype} is not numeric")
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if low >= info.min and high <= info.max:
            if data.dtype == dtype:
                return data
            return data.astype(dtype, order="K")
    raise CaseRejected(Kind.NON_INTEGER_LABEL, rel, f"label values {low}..{high} overflow int64")

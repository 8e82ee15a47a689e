"""Reading raw medical images of any format nnU-Net v2 accepts, as NIfTI images.

``.nii``/``.nii.gz`` go through :func:`~neurosam3d.io.nifti.load_nifti` (bounded, fast). MetaImage
(``.mha``, ``.mhd``) and NRRD (``.nrrd``, ``.nhdr``) are read with SimpleITK, the reader nnU-Net
itself uses for them, and converted exactly to a NIfTI image in RAS+ world coordinates:

* ITK's array is (z, y, x) for index (x, y, z): transposed to (i, j, k) = (x, y, z);
* ITK's physical frame is LPS: ``affine[:3, :3] = F @ D @ diag(spacing)`` and
  ``affine[:3, 3] = F @ origin`` with ``F = diag(-1, -1, 1)`` and ``D`` the direction matrix;
* multi-component pixels (vectors) become a trailing channel axis, as a 4D NIfTI stores them.

The header (size, pixel type) is read first and checked against
:class:`~neurosam3d.io.nifti.ReadLimits` before the pixels are loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from neurosam3d.io.nifti import NiftiError, ReadLimits, load_nifti

#: Suffixes read through SimpleITK.
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
#: Suffixes read through :func:`load_nifti`.
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: LPS (ITK) <-> RAS (NIfTI): flip the first two world axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def image_suffix(path: Path) -> str:
    """``.nii.gz`` for ``x.nii.gz``, else the last suffix, lower case."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def itk_affine(
    direction: tuple[float, ...], spacing: tuple[float, ...], origin: tuple[float, ...]
) -> np.ndarray:
    """The NIfTI (RAS+) voxel -> world affine of an ITK image's geometry (LPS, 3D)."""
    matrix = np.asarray(direction, float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ matrix @ np.diag(np.asarray(spacing, float))
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(origin, float)
    return affine


def _load_itk(path: Path, limits: ReadLimits) -> nib.Nifti1Image:
    import SimpleITK as sitk

    if not path.is_file():
        raise NiftiError(path, "file does not exist", "missing")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise NiftiError(path, f"not a readable image ({first})", "not_nifti") from exc
    size = tuple(int(n) for n in reader.GetSize())
    if len(size) != 3:
        raise NiftiError(path, f"image has {len(size)} dimensions {size}; expected 3D", "shape")
    components = int(reader.GetNumberOfComponents())
    voxels = int(np.prod(size, dtype=np.float64)) * components
    probe = sitk.Image([1, 1, 1], reader.GetPixelID(), components)  # one voxel: its numpy dtype
    itemsize = sitk.GetArrayViewFromImage(probe).dtype.itemsize
    claim = f"header claims {'x'.join(map(str, size))} voxels x {components} components"
    if voxels > limits.max_voxels or voxels * itemsize > limits.max_bytes:
        raise NiftiError(
            path,
            f"{claim} ({voxels * itemsize:,} bytes): more than the limits of "
            f"{limits.max_voxels:,} voxels / {limits.max_bytes:,} bytes",
            "too_large",
        )
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise NiftiError(path, f"cannot read the pixel data ({first})", "truncated") from exc
    array = sitk.GetArrayFromImage(image)  # (z, y, x[, c])
    data = np.asfortranarray(np.moveaxis(array, (0, 1, 2), (2, 1, 0)))
    affine = itk_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())
    nifti = nib.Nifti1Image(data, affine)
    nifti.set_sform(affine, code=1)
    nifti.set_qform(affine, code=1)
    nifti.header.set_xyzt_units("mm")
    return nifti


def load_image(
    path: str | os.PathLike[str], *, limits: ReadLimits | None = None
) -> nib.Nifti1Image:
    """Any supported raw image (see the module docstring) as a NIfTI image, fully decoded.

    Raises :class:`~neurosam3d.io.nifti.NiftiError` (naming the file) for a missing, unreadable,
    malformed or too large file.
    """
    path = Path(path)
    suffix = image_suffix(path)
    limits = limits or ReadLimits.from_env()
    if suffix in ITK_SUFFIXES:
        return _load_itk(path, limits)
    return load_nifti(path, limits=limits)  # .nii, .nii.gz, and NIfTI bytes under any name

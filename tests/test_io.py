"""Atomic writes and deterministic NIfTI I/O on the shipped real CT."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from neurosam3d.io.atomic import atomic_path, atomic_write_bytes, remove_stale_temporaries
from neurosam3d.io.digest import file_sha256
from neurosam3d.io.nifti import (
    NiftiError,
    as_3d,
    load_nifti,
    make_image,
    save_nifti,
    voxel_spacing,
)
from neurosam3d.io.paths import check_name, safe_join

#: The shipped real CT (example_ct_sm of TotalSegmentator's test files), in the repository.
CT = Path(__file__).resolve().parents[1] / "samples" / "totalsegmentator" / "s0001" / "ct.nii.gz"


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.nii.gz.tmp-12-abc").write_bytes(b"junk")
    (tmp_path / "sub" / "x.nii.gz").write_bytes(b"keep")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.nii.gz"]


def _ct() -> Path:
    assert CT.is_file(), f"{CT} is missing from the checkout"
    return CT


def test_save_is_deterministic_and_lossless(tmp_path: Path) -> None:
    image = load_nifti(_ct())
    data = np.asanyarray(image.dataobj)
    out = make_image(data, image.affine, like=image)
    save_nifti(out, tmp_path / "a.nii.gz")
    save_nifti(out, tmp_path / "b.nii.gz")
    digest = [
        hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.nii.gz", "b.nii.gz")
    ]
    assert digest[0] == digest[1]
    back = load_nifti(tmp_path / "a.nii.gz")
    assert np.array_equal(np.asanyarray(back.dataobj), data)
    assert back.get_data_dtype() == data.dtype
    np.testing.assert_allclose(back.affine, image.affine)
    assert voxel_spacing(back) == pytest.approx((3.0, 3.0, 3.0))


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(_ct().read_bytes()[:4000])
    with pytest.raises(NiftiError, match=r"truncated\.nii\.gz: corrupt or truncated gzip"):
        load_nifti(truncated)
    text = tmp_path / "notes.nii"
    text.write_text("this is not an image")
    with pytest.raises(NiftiError, match=r"notes\.nii: not a readable NIfTI"):
        load_nifti(text)
    with pytest.raises(NiftiError, match="does not exist"):
        load_nifti(tmp_path / "missing.nii.gz")


def test_non_finite_is_reported(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    save_nifti(make_image(data, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(NiftiError, match="1 voxels are NaN or infinite"):
        load_nifti(tmp_path / "nan.nii.gz", check_finite=True)


def test_atomic_files_get_umask_permissions_and_size(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert atomic_write_bytes(tmp_path / "d.bin", b"12345", durable=False) == 5
        assert atomic_write_bytes(tmp_path / "f.bin", b"1") == 1
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "parts", [("../x",), ("a", "../../x"), ("/etc/passwd",), ("a/../../x",), ("..\\x",), ("C:x",)]
)
def test_safe_join_rejects_parts_leading_outside_the_root(tmp_path: Path, parts) -> None:
    with pytest.raises(ValueError, match=r"outside|absolute"):
        safe_join(tmp_path, *parts)


def test_safe_join_and_names_accept_ordinary_paths(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "DS/imagesTr", "c1.nii.gz") == tmp_path / "DS/imagesTr/c1.nii.gz"
    assert safe_join(tmp_path, "a/../b") == tmp_path / "a/../b"
    assert check_name("Dataset001_Ab-c.1") == "Dataset001_Ab-c.1"
    for bad in ("..", "../x", "a/b", ".x", "", None):
        with pytest.raises(ValueError, match="not a safe file name"):
            check_name(bad, "case id")


def test_as_3d_drops_singleton_axes_and_selects_channels(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4 * 2, dtype=np.int16).reshape(2, 3, 4, 2)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    image = make_image(data, affine)
    with pytest.raises(NiftiError, match=r"x\.nii\.gz: image has shape \(2, 3, 4, 2\): 2 channels"):
        as_3d(image, "x.nii.gz")
    picked = as_3d(image, "x.nii.gz", channel=1)
    np.testing.assert_array_equal(np.asarray(picked.dataobj), data[..., 1])
    np.testing.assert_array_equal(picked.affine, affine)
    single = as_3d(make_image(data[..., :1, None], affine), "y.nii.gz")
    np.testing.assert_array_equal(np.asarray(single.dataobj), data[..., 0])
    with pytest.raises(NiftiError, match="no channel 2"):
        as_3d(image, "x.nii.gz", channel=2)
    with pytest.raises(NiftiError, match="expected a 3D volume"):
        as_3d(make_image(data[..., 0, 0], affine), "z.nii.gz")


def test_file_sha256_is_the_hash_of_the_bytes_and_names_a_missing_file(tmp_path: Path) -> None:
    assert file_sha256(CT) == hashlib.sha256(CT.read_bytes()).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError) as err:
        file_sha256(tmp_path / "missing.ckpt")
    assert err.value.filename == str(tmp_path / "missing.ckpt")

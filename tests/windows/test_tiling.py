"""Window planning covers real targets; border extension and stitching on hand-built cases."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from neurosam3d.transforms.geometry import Box
from neurosam3d.windows.tiling import Stitcher, border_neighbours, plan_windows, union_box


def _covered(windows: list[Box], shape) -> np.ndarray:
    covered = np.zeros(shape, bool)
    for w in windows:
        covered[
            tuple(slice(max(s, 0), max(e, 0)) for s, e in zip(w.start, w.stop, strict=True))
        ] = True
    return covered


def test_windows_cover_a_real_target_larger_than_one_window(real):
    seg = nib.load(real["ct_seg"])
    liver = np.asarray(seg.dataobj) == 5
    idx = np.argwhere(liver)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    assert (hi - lo).max() > 32
    windows = plan_windows(lo, hi, 32, overlap=0.25)
    assert len(windows) > 1 and all(w.size == (32, 32, 32) for w in windows)
    assert _covered(windows, liver.shape)[liver].all()
    # Deterministic and in C order of their starts.
    assert windows == plan_windows(lo, hi, 32, overlap=0.25)
    assert windows == sorted(windows, key=lambda w: w.start)


def test_small_target_gets_one_centred_window_and_a_touching_one_gets_two():
    lo, hi = np.array([10, 10, 10]), np.array([20, 14, 11])
    (window,) = plan_windows(lo, hi, 16)
    assert window.start == (7, 4, 3) and window.stop == (23, 20, 19)
    # 16 voxels fill the window exactly; with the 1-voxel margin a second window is needed.
    assert len(plan_windows(np.array([0, 0, 0]), np.array([16, 4, 4]), 16)) == 2


def test_border_neighbours_follow_the_touched_faces_inside_the_grid():
    box = Box((0, 8, 8), (8, 8, 8))
    mask = np.zeros(box.size, bool)
    mask[0, 3, 3] = True  # touches the low face of axis 0, which is the grid border: ignored
    mask[3, 7, 3] = True  # touches the high face of axis 1
    assert border_neighbours(mask, box, (32, 32, 32), overlap=0.25) == [Box((0, 14, 8), (8, 8, 8))]
    assert border_neighbours(np.zeros(box.size, bool), box, (32, 32, 32)) == []


def test_stitcher_averages_overlapping_windows():
    a, b = Box((0, 0, 0), (4, 2, 2)), Box((2, 0, 0), (4, 2, 2))
    region = union_box([a, b], (5, 2, 2))
    assert region == Box((0, 0, 0), (5, 2, 2))
    stitcher = Stitcher(region)
    stitcher.set(a, np.full(a.size, 1.0, np.float32))
    stitcher.set(b, np.full(b.size, 0.0, np.float32))
    stitcher.set(b, np.full(b.size, 0.5, np.float32))  # replaces b's previous prediction
    np.testing.assert_allclose(stitcher.probabilities()[:, 0, 0], [1.0, 1.0, 0.75, 0.75, 0.5])

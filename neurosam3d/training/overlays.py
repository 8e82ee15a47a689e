"""Validation overlay pictures: image slice, reference and prediction outlines, clicks."""

from __future__ import annotations

from typing import Any

import numpy as np


def overlay_figure(
    image: np.ndarray,
    target: np.ndarray,
    probs: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    title: str,
) -> Any:
    """A matplotlib figure of the axial slice (first axis) through the first click.

    ``image``, ``target``, ``probs``: ``S x S x S`` arrays (normalised intensity, 0/1 reference,
    probabilities); ``coords`` ``N x 3`` voxel indices and ``labels`` ``N`` of the clicks. Left:
    image; right: reference (green) and prediction > 0.5 (red) outlines, clicks within one voxel
    of the slice (positive +, negative x).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = int(np.clip(round(float(coords[0, 0])), 0, image.shape[0] - 1))
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), dpi=100)
    for ax in axes:
        ax.imshow(image[z].T, cmap="gray", origin="lower")
        ax.set_axis_off()
    axes[1].contour(target[z].T, levels=[0.5], colors="lime", linewidths=1)
    axes[1].contour((probs[z] > 0.5).T, levels=[0.5], colors="red", linewidths=1)
    near = np.abs(coords[:, 0] - z) <= 1
    for (_, y, x), lab in zip(coords[near], labels[near], strict=True):
        if lab >= 0:
            axes[1].plot(y, x, "+" if lab == 1 else "x", color="yellow", markersize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig

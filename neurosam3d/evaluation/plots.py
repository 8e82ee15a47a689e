"""Pictures of an evaluation: the Dice-vs-clicks curve and overlays of the worst targets.

Matplotlib runs with the Agg backend (no display); PNGs are written atomically. Overlays show
one slice of the image (grey), the reference (green outline) and the prediction (red outline)
through the reference's centre of mass along the last array axis of the RAS-reoriented volume.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from nibabel import orientations

from neurosam3d.io.atomic import atomic_write_bytes


@dataclass(frozen=True)
class OverlaySlice:
    """A 2-D slice (RAS axes 0 and 1, float32 image, bool masks) of one target, for an overlay."""

    title: str
    image: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray


def overlay_slice(
    title: str, image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, affine: np.ndarray
) -> OverlaySlice:
    """The axial (RAS) slice through ``reference``'s centre of mass of 3-D original-grid arrays."""
    transform = orientations.ornt_transform(
        orientations.io_orientation(affine), orientations.axcodes2ornt("RAS")
    )
    image, reference, prediction = (
        orientations.apply_orientation(a, transform) for a in (image, reference, prediction)
    )
    k = round(float(np.argwhere(reference)[:, 2].mean()))
    return OverlaySlice(
        title, image[:, :, k].astype(np.float32), reference[:, :, k], prediction[:, :, k]
    )


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_dice_vs_clicks(results: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Mean Dice (over targets) after each click, overall and per category, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(results["model"].unique())
    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        rows = results[results["model"] == model]
        overall = rows.groupby("click")["dice"].mean()
        ax.plot(overall.index, overall.values, "k-o", linewidth=2, label="all targets")
        for category, group in rows.groupby("category", sort=True):
            curve = group.groupby("click")["dice"].mean()
            ax.plot(curve.index, curve.values, "--", marker=".", label=str(category))
        ax.set(title=model, xlabel="clicks", ylabel="mean Dice", ylim=(0, 1))
        ax.set_xticks(sorted(rows["click"].unique()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)


def plot_overlay(view: OverlaySlice, path: str | os.PathLike[str]) -> Path:
    """One overlay PNG: image slice, reference outline (green), prediction outline (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(view.image.T, cmap="gray", origin="lower")
    for mask, colour in ((view.reference, "lime"), (view.prediction, "red")):
        if mask.any() and not mask.all():
            ax.contour(mask.T.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.2)
    ax.set_title(view.title, fontsize=8)
    ax.axis("off")
    figure.tight_layout()
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)

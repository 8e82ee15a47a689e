"""The preprocessing contract: one record per model, applied the same way by every path.

A :class:`Preprocessing` says what a model's inputs are: the **orientation** of the working
grid (axis codes such as ``"RAS"``, or ``None``: the image's stored axes), its **spacing**
(mm per working axis, or ``None``: the native grid), the **intensity** rule and its parameters
(:mod:`.intensity`: ``"zscore"`` with the CT ``ct_window``, ``"percentile"`` with
``percentiles``, or upstream's per-crop ``"crop_zscore"``), the model's **input size** (crop
edge in voxels) and the image **channel** it reads.

Every checkpoint we write stores it (Lightning ``.ckpt`` and release ``.pth`` under the key
:data:`PREPROCESSING_KEY`, the release one inside its ``args`` Namespace; safetensors as JSON
metadata under the same key), and so does every registered model version (the pyfunc's weights
file and the tag ``neurosam3d.preprocessing``). Evaluation, ``predict``, the pyfunc and the
Lightning validation data all go through :meth:`Preprocessing.prepare`, so one model sees one
kind of input wherever it runs. A file without a record gets :meth:`Preprocessing.upstream`
(SAM-Med3D's: RAS, 1.5 mm, per-crop z-score) if it is in the release format (SAM-Med3D's own
checkpoints, -turbo included), else :meth:`Preprocessing.native` (what our training did before
the record existed: stored axes, native grid, CT window [-1000, 1000] + z-score: our Lightning
checkpoints, bare state dicts, safetensors).
An explicit option (``--orientation``, ``--spacing-mm``, ``--ct-window``) overrides a field
(:meth:`Preprocessing.overridden`); evaluation records the effective record and the overridden
fields in ``run.json`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurosam3d.transforms.geometry import Box, GridMap, plan_grid, sample_box
from neurosam3d.transforms.intensity import (
    DEFAULT_CT_WINDOW,
    PERCENTILES,
    ct_window_for,
    normalise_intensity,
    volume_stats,
    zscore_crop,
)

logger = logging.getLogger(__name__)

#: Checkpoint key (Lightning, release ``args``, safetensors metadata) holding the record.
PREPROCESSING_KEY = "neurosam3d_preprocessing"
#: Intensity rules (module docstring).
INTENSITY_RULES = ("zscore", "percentile", "crop_zscore")
#: Upstream SAM-Med3D's working grid.
UPSTREAM_ORIENTATION, UPSTREAM_SPACING_MM = "RAS", 1.5
#: Written with every record; a newer version is refused rather than misread.
RECORD_VERSION = 1
#: Value of the ``orientation`` / ``spacing_mm`` options meaning "the image's own axes / grid".
NATIVE = "native"


class PreprocessingError(ValueError):
    """A preprocessing record or option that cannot be used; the message names it."""


def _axis_codes(value: str) -> str:
    from nibabel import orientations

    codes = str(value).upper()
    try:
        orientations.axcodes2ornt(tuple(codes))
    except ValueError as exc:
        raise PreprocessingError(f"orientation {value!r}: {exc}") from None
    if len(codes) != 3:
        raise PreprocessingError(f"orientation {value!r}: give three axis codes such as RAS")
    return codes


@dataclass(frozen=True)
class Preprocessing:
    """What a model's inputs are (module docstring). Fields are validated and normalised.

    ``spacing_mm`` accepts one value (isotropic) and is stored as three; ``ct_window`` is the
    HU clip of CT volumes (``None``: no clip); ``input_size``: crop edge in voxels (``None``
    when unknown); ``channel``: the image channel the model reads (0 for 3-D images).
    """

    orientation: str | None = None
    spacing_mm: tuple[float, float, float] | None = None
    intensity: str = "zscore"
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW
    percentiles: tuple[float, float] = PERCENTILES
    input_size: int | None = None
    channel: int = 0

    def __post_init__(self) -> None:
        if self.orientation is not None:
            object.__setattr__(self, "orientation", _axis_codes(self.orientation))
        if self.spacing_mm is not None:
            values = np.atleast_1d(np.asarray(self.spacing_mm, dtype=np.float64))
            if values.size == 1:
                values = np.repeat(values, 3)
            if values.shape != (3,) or not np.all(values > 0) or not np.all(np.isfinite(values)):
                raise PreprocessingError(
                    f"spacing_mm {self.spacing_mm!r}: give one positive spacing in mm or three"
                )
            object.__setattr__(self, "spacing_mm", tuple(float(v) for v in values))
        if self.intensity not in INTENSITY_RULES:
            raise PreprocessingError(
                f"intensity rule {self.intensity!r} is not one of {INTENSITY_RULES}"
            )
        if self.ct_window is not None:
            low, high = (float(v) for v in self.ct_window)
            if not low < high:
                raise PreprocessingError(f"ct_window {self.ct_window!r}: low end not below high")
            object.__setattr__(self, "ct_window", (low, high))
        low, high = (float(v) for v in self.percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise PreprocessingError(
                f"percentiles {self.percentiles!r}: need 0 <= low < high <= 100"
            )
        object.__setattr__(self, "percentiles", (low, high))
        if self.input_size is not None:
            object.__setattr__(self, "input_size", int(self.input_size))
        if int(self.channel) < 0:
            raise PreprocessingError(f"channel {self.channel!r} is negative")
        object.__setattr__(self, "channel", int(self.channel))

    # -- the two records a file without one gets ----------------------------------------------

    @classmethod
    def upstream(cls, input_size: int | None = 128) -> Preprocessing:
        """SAM-Med3D's preprocessing (release checkpoints): RAS, 1.5 mm, per-crop z-score."""
        return cls(
            orientation=UPSTREAM_ORIENTATION,
            spacing_mm=(UPSTREAM_SPACING_MM,) * 3,  # type: ignore[arg-type]
            intensity="crop_zscore",
            ct_window=None,
            input_size=input_size,
        )

    @classmethod
    def native(cls, input_size: int | None = None) -> Preprocessing:
        """Our training's before the record existed: stored axes, native grid, CT [-1000, 1000]
        + foreground z-score."""
        return cls(input_size=input_size)

    # -- records in files ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists for tuples), with the record version."""
        out: dict[str, Any] = {"version": RECORD_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON with sorted keys (deterministic bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: object = "record") -> Preprocessing:
        """The record of :meth:`to_dict`; unknown keys or a newer version are refused."""
        if not isinstance(data, Mapping):
            raise PreprocessingError(f"{source}: the preprocessing record is not a mapping")
        values = dict(data)
        version = values.pop("version", RECORD_VERSION)
        if version != RECORD_VERSION:
            raise PreprocessingError(
                f"{source}: preprocessing record version {version!r}; this code reads "
                f"version {RECORD_VERSION}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PreprocessingError(f"{source}: unknown preprocessing keys {unknown}")
        for key in ("spacing_mm", "ct_window", "percentiles"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except PreprocessingError as exc:
            raise PreprocessingError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise PreprocessingError(f"{source}: bad preprocessing record ({exc})") from None

    @classmethod
    def from_json(cls, text: str, source: object = "record") -> Preprocessing:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PreprocessingError(
                f"{source}: preprocessing record is not JSON ({exc})"
            ) from None
        return cls.from_dict(data, source)

    # -- explicit options ---------------------------------------------------------------------

    def overridden(
        self,
        *,
        orientation: str | None = None,
        spacing_mm: float | Sequence[float] | str | None = None,
        ct_window: Sequence[float] | None = None,
    ) -> tuple[Preprocessing, list[str]]:
        """This record with the given options replacing its fields; ``(record, names)``.

        ``None`` keeps a field; ``"native"`` (:data:`NATIVE`) for ``orientation`` /
        ``spacing_mm`` means the image's own axes / grid. ``names``: the fields an option
        changed (what evaluation records as overridden).
        """
        changes: dict[str, Any] = {}
        if orientation is not None:
            changes["orientation"] = None if str(orientation).lower() == NATIVE else orientation
        if spacing_mm is not None:
            native = isinstance(spacing_mm, str) and spacing_mm.lower() == NATIVE
            changes["spacing_mm"] = None if native else spacing_mm
        if ct_window is not None:
            changes["ct_window"] = tuple(ct_window)
        updated = dataclasses.replace(self, **changes)
        names = [k for k in changes if getattr(updated, k) != getattr(self, k)]
        return updated, names

    # -- applying it --------------------------------------------------------------------------

    def grid(self, affine: np.ndarray, shape: Sequence[int]) -> GridMap:
        """The working grid of an image (``affine`` 4 x 4 voxel -> mm, ``shape`` 3 axes)."""
        return plan_grid(
            np.asarray(affine, np.float64), tuple(shape), self.orientation, self.spacing_mm
        )

    def prepare(
        self, volume: np.ndarray, modality: str, affine: np.ndarray, *, lazy: bool = False
    ) -> PreparedImage:
        """``volume`` (I x J x K, original grid, any numeric dtype) ready for windows.

        ``modality``: ``"CT"`` or ``"MR"`` (the CT window applies to CT only). Volume-level
        rules normalise the whole volume once (so any window equals the window of the
        normalised volume, and a training-store crop equals it too); ``crop_zscore`` keeps the
        raw values and normalises each window (:meth:`PreparedImage.window`). ``lazy``
        (volume-level rules): ``volume`` stays as stored and is normalised per read
        (:class:`~.volume.NormalisedVolume`, statistics computed without float copies:
        :func:`~.intensity.volume_stats`), so a full-size volume gets no float32 copy; windows
        equal the eager ones (the z-score up to float32 rounding of its statistics).
        """
        grid = self.grid(affine, volume.shape[:3])
        if self.intensity == "crop_zscore":
            data = np.asarray(volume, dtype=np.float32)
            return PreparedImage(data, grid, 0.0, zscore_crop)
        if lazy:
            from neurosam3d.transforms.volume import NormalisedVolume

            stats = volume_stats(volume, modality, self.ct_window, self.intensity, self.percentiles)
            return PreparedImage(NormalisedVolume(volume, stats), grid, stats.background, None)
        data = normalise_intensity(
            volume, modality, self.ct_window, scaling=self.intensity, percentiles=self.percentiles
        )
        return PreparedImage(data, grid, float(data.min()) if data.size else 0.0, None)

    def ct_window_of(self, modality: str) -> tuple[float, float] | None:
        """The clip window applied to a volume of ``modality`` (None: no clip)."""
        return None if self.ct_window is None else ct_window_for(modality, self.ct_window)

    def describe(self) -> str:
        """One line for logs and reports."""
        grid = "stored axes" if self.orientation is None else self.orientation
        spacing = (
            "native grid"
            if self.spacing_mm is None
            else "x".join(f"{s:g}" for s in self.spacing_mm) + " mm"
        )
        window = "" if self.ct_window is None else f", CT window {list(self.ct_window)}"
        return f"{grid}, {spacing}, {self.intensity}{window}, input {self.input_size}, channel {self.channel}"


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for model windows: ``volume`` (original grid, float32: normalised, or raw
    for per-crop rules; or a :class:`~.volume.NormalisedVolume` from ``prepare(lazy=True)``), its
    working ``grid``, the ``background`` that pads windows leaving the image, and
    ``crop_transform`` (per-window normalisation, or None)."""

    volume: Any
    grid: GridMap
    background: float
    crop_transform: Callable[[np.ndarray], np.ndarray] | None

    def window(self, box: Box) -> np.ndarray:
        """The model input of one working-grid ``box`` (``box.size`` float32)."""
        crop = sample_box(self.volume, self.grid, box, order=1, cval=self.background)
        return crop if self.crop_transform is None else self.crop_transform(crop)


def record_from_metadata(
    metadata: Mapping[str, Any], fmt: str, input_size: int | None, source: object
) -> tuple[Preprocessing, str]:
    """The record a checkpoint holds, else the one a file of its kind gets; ``(record, where)``.

    ``metadata``: the checkpoint's entries besides the weights (:class:`CheckpointContents`);
    ``fmt``: its format; ``where``: ``"recorded"``, ``"upstream default"`` (a release-format
    file: SAM-Med3D's own checkpoints) or ``"native default"`` (any other: our Lightning
    checkpoints from before the record, bare state dicts, safetensors; module docstring).
    """
    raw: Any = metadata.get(PREPROCESSING_KEY)
    args = metadata.get("args")
    if raw is None and args is not None:
        raw = getattr(args, PREPROCESSING_KEY, None)
    if raw is not None:
        record = (
            Preprocessing.from_json(raw, source)
            if isinstance(raw, str)
            else Preprocessing.from_dict(raw, source)
        )
        if record.input_size is None:
            record = dataclasses.replace(record, input_size=input_size)
        return record, "recorded"
    if fmt.startswith("release"):
        return Preprocessing.upstream(input_size), "upstream default"
    return Preprocessing.native(input_size), "native default"

"""The MLflow ``pyfunc`` flavour of a registered model: a NIfTI image and clicks in, a mask out.

Input (a DataFrame, one row per request):

* ``image``: a path to a NIfTI file readable where the model runs, or the file's bytes
  base64-encoded (``.nii`` or ``.nii.gz``);
* ``points``: clicks as ``x,y,z,+`` / ``x,y,z,-`` strings in voxel indices of that image,
  separated by ``;`` (e.g. ``"60,50,40,+;62,50,40,-"``).

Parameter ``max_windows`` (default 27): most windows a mask grows into (``predict``'s
``--max-windows``).

Output (a DataFrame, same rows): ``mask``, the uint8 mask on exactly the image's grid as base64
of a ``.nii.gz`` file, and ``voxels``, its foreground voxel count.

Artifacts: ``weights`` (safetensors state dict, the architecture and the
:class:`~neurosam3d.transforms.Preprocessing` record in its metadata) and ``config`` (the
architecture as JSON, :class:`~neurosam3d.model.ModelConfig` fields, for people). Images are
prepared as the record says, by the code ``neurosam3d predict`` and evaluation run. The model
is self-contained: this package is logged with it (MLflow ``code_paths``: ``code/neurosam3d``,
put on ``sys.path`` when the model loads) and its requirements pin the libraries that code
imports, so it loads in an environment built from the logged requirements alone.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

POINT_SEPARATOR = ";"
GZIP_MAGIC = b"\x1f\x8b"


def _image_file(value: str, folder: Path, index: int) -> Path:
    """``value`` as a local NIfTI path: an existing path, or base64 bytes written to ``folder``."""
    if len(value) < 4096 and Path(value).is_file():
        return Path(value)
    try:
        data = base64.b64decode(value, validate=True)
    except ValueError as err:
        raise ValueError(
            f"image {value[:80]!r} is neither an existing NIfTI path nor base64 data"
        ) from err
    suffix = ".nii.gz" if data[:2] == GZIP_MAGIC else ".nii"
    path = folder / f"image{index}{suffix}"
    path.write_bytes(data)
    return path


class PromptableSegmenter(mlflow.pyfunc.PythonModel):
    """Loads the architecture and weights once; segments each row from its clicks."""

    def load_context(self, context: Any) -> None:
        from neurosam3d.model import load_checkpoint, read_preprocessing

        # The safetensors file carries the architecture and the preprocessing in its metadata.
        self.model = load_checkpoint(context.artifacts["weights"]).eval()
        self.preprocessing, _ = read_preprocessing(context.artifacts["weights"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from neurosam3d.inference import predict_file
        from neurosam3d.windows.growth import DEFAULT_MAX_WINDOWS

        max_windows = int((params or {}).get("max_windows") or DEFAULT_MAX_WINDOWS)
        masks, voxels = [], []
        with tempfile.TemporaryDirectory(prefix="neurosam3d-pyfunc-") as tmp:
            folder = Path(tmp)
            for index, row in enumerate(model_input.itertuples(index=False)):
                image = _image_file(str(row.image), folder, index)
                points = [p.strip() for p in str(row.points).split(POINT_SEPARATOR) if p.strip()]
                out = folder / f"mask{index}.nii.gz"
                result = predict_file(
                    self.model,
                    image,
                    points,
                    out,
                    preprocessing=self.preprocessing,
                    max_windows=max_windows,
                )
                masks.append(base64.b64encode(out.read_bytes()).decode("ascii"))
                voxels.append(int(result.mask.sum()))
        return pd.DataFrame({"mask": masks, "voxels": voxels})

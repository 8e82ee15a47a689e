"""2-D baselines (SAM ViT-B, SAM-Med2D ViT-B) with SAM's key names and call signatures.

* :func:`build_sam2d` (also reachable as ``neurosam3d.model.build_model("sam_vit_b")``);
* :data:`SAM2D_CONFIGS`, :class:`Sam2DConfig`; :class:`Sam2D`;
* :class:`Predictor2D`: ``set_image`` once per slice, ``predict`` per prompt step;
* :func:`detect_sam2d` recognises their state dicts (used by ``neurosam3d.model.detect_config``).
"""

from neurosam3d.model.sam2d.builder import build_sam2d
from neurosam3d.model.sam2d.config import SAM2D_CONFIGS, Sam2DConfig
from neurosam3d.model.sam2d.detect import detect_sam2d
from neurosam3d.model.sam2d.predictor import Predictor2D
from neurosam3d.model.sam2d.sam2d import Sam2D

__all__ = ["SAM2D_CONFIGS", "Predictor2D", "Sam2D", "Sam2DConfig", "build_sam2d", "detect_sam2d"]

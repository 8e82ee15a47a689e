"""Model windows over the working grid, shared by evaluation and inference (below both).

* :mod:`.tiling`: planning windows over clicks or a target's box, the neighbours beyond a
  predicted mask's faces, stitching overlapping windows' probabilities;
* :mod:`.session`: one window's interactive session (crop embedding computed once, clicks,
  logits) and batched decoding of several;
* :mod:`.growth`: :class:`~.growth.GrowingWindows`, the windows of one structure that follow
  its prediction (``neurosam3d predict``, the Predictor's users and ``evaluate``'s ``full``
  protocol).

Imports :mod:`neurosam3d.transforms` and :mod:`neurosam3d.model`, never
:mod:`neurosam3d.evaluation`, :mod:`neurosam3d.inference`, :mod:`neurosam3d.training` or
:mod:`neurosam3d.registry` (``tests/transforms/test_layers.py``).
"""

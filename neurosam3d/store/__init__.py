"""The training store: per case, the image and one label volume in a random-access layout.

The NIfTI label tree of ``neurosam3d prepare`` stays the contract other tools read; the store is
derived from it, case by case, so that training reads a ``128^3`` crop without decoding a whole
gzip volume and holds no per-row copies of anything (docs/manifest.md, "Training store"):

- ``<root>/<DATASET>/store<SPLIT>/<case>/image.b2nd``: the primary image channel, lossless
  (integers in the smallest integer type holding them), a chunked blosc2 array;
- ``labels.b2nd``: one label volume per case: each voxel holds the code of the *set* of classes
  covering it, so overlapping classes (BraTS regions, per-class files) are kept exactly and any
  class's binary crop is ``isin(codes, label_codes[class])``;
- ``locations.npy``: up to :data:`~neurosam3d.store.layout.MAX_LOCATIONS` foreground voxels
  per class (a seeded sample, as nnU-Net's ``class_locations``), the centres of training crops;
- ``manifests/<DATASET>_store.parquet`` and the combined ``<root>/store.parquet`` (schema
  ``neurosam3d.data.schema.STORE_SCHEMA``): one row per case with the entry, what it was built
  from (image file size, each class's mask SHA-256) and the intensity statistics
  (:class:`neurosam3d.transforms.intensity.IntensityStats`).

``prepare`` writes entries while it writes the tree (:mod:`.encode`, from the arrays it has in
memory); ``neurosam3d store build`` (:func:`.build.build_store`) derives them from an existing
tree. :mod:`.reader` binds manifest rows to entries, refusing missing or stale ones.
"""

from neurosam3d.store.layout import STORE_FORMAT, StoreError

__all__ = ["STORE_FORMAT", "StoreError"]

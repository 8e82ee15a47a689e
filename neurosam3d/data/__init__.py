"""Data layer: raw public datasets -> per-class label trees + Parquet manifests.

Entry points: :func:`neurosam3d.data.prepare.prepare_dataset` / ``prepare_datasets`` (what
``neurosam3d prepare`` calls), :func:`neurosam3d.data.config.load_dataset_config`,
``config_for_layout`` (nnU-Net/MSD without a config) and ``sample_dataset_names``. Contract of
the outputs: docs/manifest.md.

Modules, in the order data flows through them:

- ``config``: dataset YAML configs and raw-root resolution.
- ``layouts``: the registry of layout kinds; each lists cases without opening images.
- ``cases``: case specs, duplicate and unsafe ids, split rules.
- ``labels``: class-name sanitising and label maps.
- ``casework``: one case in a worker (``volumes`` validation, ``label_sources`` label maps and
  per-class files, ``grid`` placement and spacing, ``masks`` one-pass boxes and encoding,
  ``files`` atomic writes, ``records`` reruns).
- ``manifest``: per-dataset and combined Parquet tables (``schema``), ``problems`` their
  quarantine reasons.
- ``shards``: which cases a shard ``I/N`` of a dataset prepares, and its record.
- ``prepare``: the parallel run over cases (of a shard) and the report.
- ``combine``: per-dataset (and per-shard) roots into one root's tables.
"""

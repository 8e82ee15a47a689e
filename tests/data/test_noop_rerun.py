"""A rerun with unchanged raw files (same size and mtime) reads none of their bytes."""

import os
import shutil
from pathlib import Path

from neurosam3d.data.config import load_dataset_config
from neurosam3d.data.prepare import prepare_dataset
from neurosam3d.data.records import digests_path, read_digests

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_noop_rerun_trusts_size_and_mtime_and_rehashes_a_touched_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLES / "amos_style", raw / "amos_style")
    config = load_dataset_config("sample_amos_style_cord")
    out = tmp_path / "out"
    first = prepare_dataset(config, out, raw_root=raw, workers=1)
    assert first.prepared == 2
    known = read_digests(digests_path(out, config.name))
    label = raw / "amos_style" / "labelsTr" / "sct_t2.nii.gz"
    assert str(label) in known

    # Same size and mtime, other bytes: a rerun that read the raw bytes would re-prepare.
    stat = label.stat()
    data = bytearray(label.read_bytes())
    data[-1] ^= 0xFF
    label.write_bytes(bytes(data))
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = prepare_dataset(config, out, raw_root=raw, workers=1)
    assert (again.prepared, again.skipped) == (0, 2)  # decided from stat(), no byte read

    # A new mtime (as any real edit gives): the file is hashed again, the case re-prepared.
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = prepare_dataset(config, out, raw_root=raw, workers=1)
    assert touched.prepared + len(touched.problems) >= 1 and touched.skipped == 1
    assert read_digests(digests_path(out, config.name))[str(label)][2] != known[str(label)][2]

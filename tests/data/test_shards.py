"""One dataset prepared in shards by concurrent processes, combined: the same tables as prepared
whole; a shard rerun is a no-op; bad, conflicting, missing, repeated and stale shards are refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from neurosam3d.data.combine import combine_roots
from neurosam3d.data.config import load_dataset_config
from neurosam3d.data.prepare import ShardConflictError, prepare_dataset
from neurosam3d.data.shards import claim_path, parse_shard, shard_of, shard_record_path

REPO = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).parent / "neurosam3d")]
#: Two real spinal-cord MRs (one Tr, one Val case) that fall into different shards of 2.
DATASET, NAME, RAW = "sample_amos_style_cord", "SCTPaired", REPO / "samples" / "amos_style"
PATH_COLUMNS = ("image_path", "mask_path", "entry")


def _prepare(out: Path, shard: str, raw_root: Path = REPO / "samples") -> subprocess.Popen:
    command = [*CLI, "prepare", "--dataset", DATASET, "--raw-root", str(raw_root)]
    command += ["--out", str(out), "--workers", "1", "--shard", shard]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out + err


def _strip(row: dict, prefix: str) -> dict:
    """``row`` with ``prefix`` (a root folder, ``datasets/<key>/``) taken off its tree paths."""
    row = dict(row)
    for column in PATH_COLUMNS:
        if column in row:
            assert row[column].startswith(prefix), (row[column], prefix)
            row[column] = row[column].removeprefix(prefix)
    if "image_paths" in row:
        row["image_paths"] = [p.removeprefix(prefix) for p in row["image_paths"]]
    return row


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith("-lock")
    }


def test_shards_prepared_concurrently_combine_to_the_dataset_prepared_whole(
    tmp_path: Path,
) -> None:
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    assert sorted(shard_of(c, 2) for c in ("sct_t2", "sct_t2s")) == [1, 2]  # one case each
    # two processes at once, each its own root; the whole dataset for reference
    running = [_prepare(sharded / "datasets" / f"{DATASET}-{i}of2", f"{i}/2") for i in (1, 2)]
    running.append(_prepare(whole / "datasets" / DATASET, "1/1"))
    logs = [_finish(p) for p in running]
    assert "shard 1/2: 1 cases (1 prepared" in logs[0]
    assert "shard 2/2: 1 cases (1 prepared" in logs[1]
    combine_roots(sharded, sharded / "datasets")
    combine_roots(whole, whole / "datasets")

    tables = sorted(p.name for p in (whole / "manifests").glob("*.parquet"))
    assert sorted(p.name for p in (sharded / "manifests").glob("*.parquet")) == tables
    assert f"{NAME}_Tr.parquet" in tables and f"{NAME}_Val.parquet" in tables
    names = [*(f"manifests/{t}" for t in tables), "manifest.parquet", "store.parquet"]
    names += ["absent.parquet", "quarantine.parquet"]
    for name in names:
        whole_rows = [
            _strip(r, f"datasets/{DATASET}/") for r in pq.read_table(whole / name).to_pylist()
        ]
        rows = pq.read_table(sharded / name).to_pylist()
        # same rows in the same order, but for the root folder (the shard's) in the tree paths
        assert [_strip(r, f"datasets/{DATASET}-{shard_of(r['case_id'], 2)}of2/") for r in rows] == (
            whole_rows
        ), name
    manifest = pq.read_table(sharded / "manifest.parquet").to_pylist()
    assert len(manifest) == 2
    for row in manifest:  # the label files (and images) the rows point at: the same bytes
        stripped = _strip(row, f"datasets/{DATASET}-{shard_of(row['case_id'], 2)}of2/")
        for column in ("mask_path", "image_path"):
            reference = whole / "datasets" / DATASET / stripped[column]
            assert (sharded / row[column]).read_bytes() == reference.read_bytes()

    # a rerun of a shard is a no-op: nothing prepared, no file rewritten
    root = sharded / "datasets" / f"{DATASET}-1of2"
    before = _snapshot(root)
    assert "1 cases (0 prepared, 1 unchanged" in _finish(_prepare(root, "1/2"))
    assert _snapshot(root) == before


@pytest.mark.parametrize("shard", ["3/2", "0/2", "2", "a/b", "1/0"])
def test_bad_shard_is_refused_naming_the_option(tmp_path: Path, shard: str) -> None:
    done = subprocess.run(
        [*CLI, "prepare", "--dataset", DATASET, "--out", str(tmp_path), "--shard", shard],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--shard" in done.stderr and "expected I/N" in done.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was written
    with pytest.raises(ValueError, match="expected I/N"):
        parse_shard(shard)


def test_a_shard_folder_holds_one_shard_only(tmp_path: Path) -> None:
    root = tmp_path / "c" / "datasets" / "s"
    prepare_dataset(DATASET, root, workers=1, shard=(1, 2))
    with pytest.raises(ShardConflictError, match=r"holds shard 1/2 .* prepare shard 2/2 into a"):
        prepare_dataset(DATASET, root, workers=1, shard=(2, 2))
    with pytest.raises(ShardConflictError, match="prepare the unsharded dataset into a folder"):
        prepare_dataset(DATASET, root, workers=1)
    prepare_dataset(DATASET, tmp_path / "w", workers=1)
    with pytest.raises(ShardConflictError, match="holds the unsharded dataset"):
        prepare_dataset(DATASET, tmp_path / "w", workers=1, shard=(1, 2))
    # a shard killed after its claim (no record yet) is rerun into its folder like any rerun
    shard_record_path(root / "manifests", NAME).unlink()
    with pytest.raises(ValueError, match=r"shard 1/2 of dataset 'SCTPaired' did not finish"):
        combine_roots(tmp_path / "c", tmp_path / "c" / "datasets")
    assert prepare_dataset(DATASET, root, workers=1, shard=(1, 2)).skipped == 1


def test_combine_refuses_missing_repeated_mixed_and_stale_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw" / "amos_style"
    shutil.copytree(RAW, raw)
    config = load_dataset_config(DATASET)
    out = tmp_path / "combined"
    datasets = out / "datasets"

    def prepare(key: str, shard: tuple[int, int]) -> int:
        report = prepare_dataset(
            config, datasets / key, raw_root=raw.parent, workers=1, shard=shard
        )
        return report.prepared

    assert prepare("a-1of2", (1, 2)) == 1
    with pytest.raises(ValueError, match=r"prepared in 2 shards but shard\(s\) 2/2 are missing"):
        combine_roots(out, datasets)
    assert prepare("a-2of2", (2, 2)) == 1
    combine_roots(out, datasets)
    assert len(pq.read_table(out / "manifest.parquet")) == 2

    shutil.copytree(datasets / "a-2of2", datasets / "b-2of2")
    with pytest.raises(ValueError, match=r"shard 2/2 is provided by 2 roots"):
        combine_roots(out, datasets)
    shutil.rmtree(datasets / "b-2of2")
    prepare("a-1of3", (1, 3))
    with pytest.raises(ValueError, match=r"shards of 2 shard counts .*delete the folders"):
        combine_roots(out, datasets)
    shutil.rmtree(datasets / "a-1of3")
    prepare("a", (1, 1))
    with pytest.raises(ValueError, match=r"provided by 3 roots, .*/a holding it prepared whole"):
        combine_roots(out, datasets)
    shutil.rmtree(datasets / "a")

    # The raw folder gains a case: only its shard has new work; until the other shard is rerun
    # too, the shards disagree on the case list and combine says which is stale.
    new = "sct_t3"
    owner, other = shard_of(new, 2), 3 - shard_of(new, 2)
    for folder in ("imagesTr", "labelsTr"):
        shutil.copy(raw / folder / "sct_t2.nii.gz", raw / folder / f"{new}.nii.gz")
    with monkeypatch.context() as patch:  # killed after its cases, before its tables
        patch.setattr("neurosam3d.data.prepare.write_dataset_tables", _killed)
        with pytest.raises(OSError, match="killed"):
            prepare(f"a-{owner}of2", (owner, 2))
    with pytest.raises(ValueError, match=rf"shard {owner}/2 of dataset 'SCTPaired' did not finish"):
        combine_roots(out, datasets)  # its old record is gone: not trusted for the new case list
    assert prepare(f"a-{owner}of2", (owner, 2)) == 0  # the rerun continues: cases were done
    with pytest.raises(ValueError, match="stale") as stale:
        combine_roots(out, datasets)
    assert f"{owner}/2 ({datasets / f'a-{owner}of2'}) saw 3 cases" in str(stale.value)
    assert f"{other}/2 ({datasets / f'a-{other}of2'}) saw 2 cases" in str(stale.value)
    assert prepare(f"a-{other}of2", (other, 2)) == 0  # no case moved: nothing to redo
    combine_roots(out, datasets)
    cases = set(pq.read_table(out / "manifest.parquet").column("case_id").to_pylist())
    assert cases == {"sct_t2", "sct_t2s", new}
    assert claim_path(datasets / "a-1of2", NAME).read_text() == "1/2\n"


def _killed(*args: object, **kwargs: object) -> None:
    raise OSError("killed")

"""Dataset configs: the shipped ones are valid, and each public dataset's file layout is read
correctly when real sample volumes are arranged under its documented names."""

from __future__ import annotations

import gzip
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from neurosam3d.data.cases import in_validation
from neurosam3d.data.config import (
    CONFIG_DIR,
    ConfigError,
    config_for_layout,
    config_from_dict,
    load_dataset_config,
)
from neurosam3d.data.labels import sanitise_class_name
from neurosam3d.data.prepare import discover, prepare_dataset
from neurosam3d.taxonomy import UNCATEGORISED, categorise

CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
PUBLIC = ["amos22", "brats2021", "kits23", "lits", "totalsegmentator_v2", "word"] + [
    n for n in CONFIGS if n.startswith("msd_task")
]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_is_valid_and_every_class_is_categorised(name: str) -> None:
    config = load_dataset_config(name)
    names = list((config.labels or {}).values()) + list(config.classes or [])
    assert all(sanitise_class_name(n) == n.lower() for n in names)
    assert [n for n in names if categorise(n) == UNCATEGORISED] == []
    assert config.licence != "unknown"


def test_all_public_datasets_of_the_issue_are_configured() -> None:
    assert set(PUBLIC) <= set(CONFIGS)
    assert len([n for n in PUBLIC if n.startswith("msd_task")]) == 10


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"name": "x", "layout": "paired", "root": "x", "lables": {}}, "unknown keys ['lables']"),
        ({"name": "x", "layout": "zip", "root": "x"}, "unknown layout 'zip'"),
        ({"name": "x", "layout": "paired", "root": "x", "modality": "PET"}, "modality must be"),
        ({"name": "x", "layout": "paired", "root": "x", "labels": {0: "bg"}}, "must be positive"),
        ({"layout": "paired", "root": "x"}, "missing required key 'name'"),
    ],
)
def test_invalid_config_is_rejected_with_the_reason(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(doc, source=Path("bad.yaml"))


def test_root_resolution(
    tmp_path: Path, samples_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = load_dataset_config("sample_kits_style_mr")
    monkeypatch.chdir(tmp_path)
    assert sample.resolve_root() == samples_dir / "kits_style"  # no ./data here: samples/
    shutil.copytree(samples_dir / "kits_style", tmp_path / "data" / "kits_style")
    assert sample.resolve_root() == tmp_path / "data" / "kits_style"  # ./data first
    shutil.copytree(samples_dir / "kits_style", tmp_path / "kits_style")
    assert sample.resolve_root(tmp_path) == tmp_path / "kits_style"
    with pytest.raises(ConfigError, match="raw folder not found"):
        load_dataset_config("kits23").resolve_root(tmp_path)


def test_val_fraction_is_a_stable_hash_of_the_case_id() -> None:
    ids = [f"case_{i:05d}" for i in range(400)]
    chosen = {c for c in ids if in_validation(c, 0.25, seed=0)}
    assert 70 < len(chosen) < 130
    assert chosen == {c for c in ids[:200] if in_validation(c, 0.25, 0)} | {
        c for c in ids[200:] if in_validation(c, 0.25, 0)
    }
    assert chosen != {c for c in ids if in_validation(c, 0.25, seed=1)}


def _copy(src: Path, dst: Path, *, gunzip: bool = False) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.decompress(src.read_bytes()) if gunzip else src.read_bytes())


def test_public_layouts_read_their_real_file_names(tmp_path: Path, t2s) -> None:
    image, label = t2s
    raw = tmp_path / "raw"
    _copy(image, raw / "lits" / "volume-0.nii", gunzip=True)
    _copy(label, raw / "lits" / "segmentation-0.nii", gunzip=True)
    for channel in ("flair", "t1", "t1ce", "t2"):
        _copy(image, raw / "brats2021" / "BraTS2021_00000" / f"BraTS2021_00000_{channel}.nii.gz")
    _copy(label, raw / "brats2021" / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz")
    for folder, case_id in (("Tr", "amos_0001"), ("Va", "amos_0507")):
        _copy(image, raw / "amos22" / f"images{folder}" / f"{case_id}.nii.gz")
        _copy(label, raw / "amos22" / f"labels{folder}" / f"{case_id}.nii.gz")
    lits = discover(load_dataset_config("lits"), raw).cases
    assert [(c.case_id, c.label_map.name) for c in lits] == [("0", "segmentation-0.nii")]
    brats = discover(load_dataset_config("brats2021"), raw).cases
    assert [s.path.name for s in brats[0].images] == [
        f"BraTS2021_00000_{c}.nii.gz" for c in ("flair", "t1", "t1ce", "t2")
    ]
    amos = discover(load_dataset_config("amos22"), raw).cases
    assert [(c.split, c.case_id, c.modality) for c in amos] == [
        ("Tr", "amos_0001", "CT"),
        ("Val", "amos_0507", "MR"),
    ]
    out = tmp_path / "out"
    report = prepare_dataset(load_dataset_config("lits"), out, raw_root=raw, workers=1)
    assert report.rows == 1 and not report.problems  # value 1 = liver in the LiTS map
    manifest = pd.read_parquet(out / "manifests" / "LiTS_Tr.parquet")
    assert manifest[["case_id", "class_name", "source_image"]].values.tolist() == [
        ["0", "liver", "volume-0.nii"]
    ]


def test_config_labels_rename_dataset_json_classes(tmp_path: Path, samples_dir: Path) -> None:
    config = replace(
        load_dataset_config("sample_msd_spinalcord"), labels={1: "cord_wm", 2: "cord_gm"}
    )
    cases = discover(config).cases
    assert [c.name for c in cases[0].classes] == ["cord_gm", "cord_wm"]


@pytest.mark.parametrize("name", ["../esc", "a/b", "..", ".hidden", "-x", "a b", "/abs"])
def test_unsafe_dataset_name_is_rejected_naming_file_and_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: {name!r}\nlayout: paired\nroot: x\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml") as error:
        load_dataset_config(path)
    assert repr(name) in str(error.value) and "not a safe folder name" in str(error.value)


def test_escaping_dataset_name_writes_nothing_outside_out(tmp_path: Path) -> None:
    out = tmp_path / "work" / "out"
    config = replace(config_for_layout("nnunet", tmp_path), name="../esc")
    with pytest.raises(ConfigError, match=r"'\.\./esc'"):
        prepare_dataset(config, out, workers=1)
    assert not (tmp_path / "work" / "esc").exists()


def test_self_describing_dataset_folder_name_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "Task 01 bad"
    root.mkdir()
    with pytest.raises(ConfigError, match=r"msd dataset folder .*Task 01 bad.*'Task 01 bad'"):
        config_for_layout("msd", root)
    with pytest.raises(ConfigError, match=r"'\.\./x'"):
        config_for_layout("nnunet", tmp_path, name="../x")

"""Fine-tuning starts from a SAM-Med3D release-format checkpoint; our checkpoints load back."""

from __future__ import annotations

from pathlib import Path

import torch

from neurosam3d.model import build_model, export_release
from neurosam3d.training.config import config_from_dict
from neurosam3d.training.module import build_network


def test_fine_tuning_starts_from_release_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    release = build_model("tiny")
    path = export_release(release, tmp_path / "release.pth")
    cfg = config_from_dict({"model": {"name": "tiny", "checkpoint": str(path)}})
    network = build_network(cfg)
    expected = release.state_dict()
    got = network.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    fresh = build_network(config_from_dict({"model": {"name": "tiny"}})).state_dict()
    assert not all(torch.equal(fresh[k], expected[k]) for k in expected)

"""The seed's 3DINO recipe (configs/neurosam3d-dino.yaml), encoder-only weights in training and
the 3DINO input scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurosam3d.model import CheckpointError, build_model, export_checkpoint
from neurosam3d.training.config import load_config
from neurosam3d.training.module import build_network
from neurosam3d.training.preprocessing import training_preprocessing
from neurosam3d.transforms.intensity import normalise_intensity, scale_percentile

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_dino_recipe_is_the_seeds() -> None:
    cfg = load_config(CONFIGS / "neurosam3d-dino.yaml")
    arch = cfg.model.architecture()
    assert cfg.model.name == "dinov2_vitl3d" and arch.img_size == 112
    assert (arch.embedding_size, arch.low_res_size, arch.input_scaling) == (7, 28, "percentile")
    record = training_preprocessing(cfg)  # what training applies and records: the same rule
    assert (record.intensity, record.percentiles) == ("percentile", (0.05, 99.95))
    assert (cfg.data.batch_size, cfg.trainer.accumulate_grad_batches) == (2, 4)
    assert (cfg.optim.lr, cfg.optim.decoder_lr_scale, cfg.optim.weight_decay) == (1e-3, 0.1, 0.005)
    assert (cfg.schedule.name, cfg.schedule.step_size, cfg.schedule.gamma) == ("step", 2000, 0.9)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.clicks.num_clicks == 11 and cfg.data.min_volume_mm3 == 100
    small = load_config(CONFIGS / "neurosam3d-dino.yaml", ["model.img_size=64"])
    assert small.model.architecture().img_size == 64
    assert small.model.architecture().pos_embed_size == 7  # pretrained weights still fit


def test_pretrained_encoder_and_checkpointing_reach_the_network(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = export_checkpoint(build_model("tiny"), tmp_path / "src.ckpt", fmt="lightning")
    cfg = load_config(
        CONFIGS / "demo-cpu.yaml",
        [f"model.pretrained_encoder={source}", "model.activation_checkpointing=true"],
    )
    torch.manual_seed(4)
    network = build_network(cfg)
    expected = torch.load(source, weights_only=True)["state_dict"]
    got = network.image_encoder.state_dict()
    assert all(torch.equal(got[k], expected[f"model.image_encoder.{k}"]) for k in got)
    assert not torch.equal(
        network.mask_decoder.iou_token.weight, expected["model.mask_decoder.iou_token.weight"]
    )
    assert network.image_encoder.grad_checkpointing
    missing = load_config(CONFIGS / "demo-cpu.yaml", [f"model.pretrained_encoder={tmp_path}/x.pth"])
    with pytest.raises(CheckpointError, match=r"x\.pth does not exist"):
        build_network(missing)


def test_percentile_scaling_maps_the_percentiles_to_minus_one_and_one() -> None:
    rng = np.random.default_rng(0)
    volume = rng.normal(100.0, 30.0, size=(40, 40, 40)).astype(np.int16)
    lo, hi = np.percentile(volume.astype(np.float32), (0.05, 99.95))
    out = scale_percentile(volume)
    assert out.dtype == np.float32 and out.shape == volume.shape
    assert out.min() == -1.0 and out.max() == 1.0
    inside = (volume > lo) & (volume < hi)
    expected = (volume[inside] - lo) / (hi - lo) * 2 - 1
    np.testing.assert_allclose(out[inside], expected, atol=1e-5)
    assert (out[volume <= lo] == -1.0).all() and (out[volume >= hi] == 1.0).all()
    assert not scale_percentile(np.full((4, 4, 4), 7.0)).any()
    ct = normalise_intensity(volume * 20 - 1500, "CT", scaling="percentile")  # clip, then scale
    assert ct.min() == -1.0 and ct.max() == 1.0
    with pytest.raises(ValueError, match="unknown intensity scaling"):
        normalise_intensity(volume, "MR", scaling="minmax")

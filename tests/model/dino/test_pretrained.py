"""``load_pretrained_encoder``: 3DINO teacher checkpoints and our own checkpoints, strictly."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch

from neurosam3d.model import (
    CheckpointError,
    build_model,
    export_checkpoint,
    load_pretrained_encoder,
)
from neurosam3d.model.dino_encoder import DinoVisionTransformer3D
from tests.model.dino.conftest import SMALL_DINO, teacher_checkpoint
from tests.model.test_parity import _close

TOL = 1e-4  # fixture README


def test_teacher_checkpoint_loads_and_reproduces_the_golden_arrays(
    dino_teacher_file: Path,
    dino_backbone: DinoVisionTransformer3D,
    dino_input: torch.Tensor,
    dino_golden: dict[str, np.ndarray],
) -> None:
    model = build_model("dinov2_vitl3d").eval()
    report = load_pretrained_encoder(model, dino_teacher_file)
    assert report.format == "3dino-teacher" and report.target == "image_encoder.backbone"
    assert report.keys.ok and report.keys.matched == 343
    assert sorted({k.split(".")[0] for k in report.ignored}) == ["dino_head", "ibot_head"]
    assert "dino_head.* (2), ibot_head.* (2)" in str(report)
    assert torch.equal(model.image_encoder.backbone.pos_embed, dino_backbone.pos_embed)
    with torch.inference_mode():  # 96^3: position embedding resized to 6^3
        got = model.image_encoder.backbone.patch_tokens(dino_input[:, :, 8:104, 8:104, 8:104])
    _close("patch_tokens_96", got, dino_golden, TOL)


def _small_teacher(tmp_path: Path) -> tuple[DinoVisionTransformer3D, Path]:
    torch.manual_seed(5)
    backbone = build_model(SMALL_DINO).image_encoder.backbone
    return backbone, teacher_checkpoint(backbone, tmp_path / "teacher.pth")


def test_missing_and_mis_shaped_backbone_keys_are_refused_with_the_key_report(
    tmp_path: Path,
) -> None:
    _, path = _small_teacher(tmp_path)
    raw = torch.load(path, weights_only=True)
    del raw["teacher"]["module.backbone.blocks.1.3.ls2.gamma"]
    raw["teacher"]["module.backbone.pos_embed"] = torch.zeros(1, 65, 64)  # a 4^3 grid, not 7^3
    torch.save(raw, path)
    model = build_model(SMALL_DINO)
    before = model.image_encoder.backbone.norm.weight.clone()
    with pytest.raises(CheckpointError) as err:
        load_pretrained_encoder(model, path)
    text = str(err.value)
    assert str(path) in text and "image_encoder.backbone" in text
    assert "1 missing" in text and "blocks.1.3.ls2.gamma" in text
    assert "pos_embed: (1, 65, 64) vs (1, 344, 64)" in text
    assert torch.equal(model.image_encoder.backbone.norm.weight, before)  # nothing loaded


def test_missing_wrong_and_unsafe_files_are_errors(tmp_path: Path) -> None:
    model = build_model(SMALL_DINO)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained_encoder(model, tmp_path / "nothing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pth"):
        load_pretrained_encoder(model, tmp_path / "text.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="holds no encoder weights"):
        load_pretrained_encoder(model, tmp_path / "other.pth")
    unsafe = {"teacher": {"backbone.x": torch.zeros(1)}, "cwd": PurePosixPath("/")}
    torch.save(unsafe, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):  # a pickled class: refused
        load_pretrained_encoder(model, tmp_path / "unsafe.pth")


def test_a_3dino_file_needs_a_3dino_model(tmp_path: Path) -> None:
    _, path = _small_teacher(tmp_path)
    with pytest.raises(CheckpointError, match="use a 3DINO configuration"):
        load_pretrained_encoder(build_model("tiny"), path)


def test_small_teacher_with_plain_backbone_prefix_loads(tmp_path: Path) -> None:
    backbone, _ = _small_teacher(tmp_path)
    path = tmp_path / "plain.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in backbone.state_dict().items()}}, path)
    model = build_model(SMALL_DINO)
    report = load_pretrained_encoder(model, path)
    assert report.ignored == [] and report.keys.matched == len(backbone.state_dict())
    image = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(
            model.image_encoder.backbone.patch_tokens(image), backbone.eval().patch_tokens(image)
        )


@pytest.mark.parametrize("fmt", ["lightning", "safetensors"])
def test_our_checkpoints_give_their_image_encoder_only(tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(1)
    source = build_model("tiny")
    path = export_checkpoint(
        source, tmp_path / f"tiny.{'ckpt' if fmt == 'lightning' else fmt}", fmt
    )
    torch.manual_seed(2)
    model = build_model("tiny")
    decoder_before = model.mask_decoder.iou_token.weight.clone()
    report = load_pretrained_encoder(model, path)
    assert report.target == "image_encoder" and report.keys.ok
    assert {k.split(".")[0] for k in report.ignored} == {"prompt_encoder", "mask_decoder"}
    for key, tensor in source.image_encoder.state_dict().items():
        assert torch.equal(model.image_encoder.state_dict()[key], tensor), key
    assert torch.equal(model.mask_decoder.iou_token.weight, decoder_before)
    with pytest.raises(CheckpointError, match="does not fit image_encoder"):
        load_pretrained_encoder(build_model("small"), path)

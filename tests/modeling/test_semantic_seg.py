"""SemSegFPNHead / SemanticSegmentor: parameter names, shapes, loss, postprocessing."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling import build_model
from torchdet.modeling.meta_arch.semantic_seg import SemSegFPNHead, build_sem_seg_head

SHAPES = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in (2, 3, 4, 5)}


def test_head_names_and_layers():
    shapes = {k: ShapeSpec(channels=32, stride=v.stride) for k, v in SHAPES.items()}
    head = SemSegFPNHead(shapes, num_classes=3, conv_dims=32, common_stride=4, norm="GN")
    names = [n for n, _ in head.named_parameters()]
    assert "p2.0.weight" in names and "p2.0.norm.weight" in names
    assert "p5.2.weight" in names and "p5.3.weight" not in names  # p5: 3 conv+upsample
    assert "p2.0.bias" not in names  # no bias with a norm
    assert names[-2:] == ["predictor.weight", "predictor.bias"]
    head.eval()
    feats = {k: torch.randn(2, 32, 64 // s.stride, 64 // s.stride) for k, s in shapes.items()}
    logits, losses = head(feats)
    assert logits.shape == (2, 3, 64, 64) and losses == {}


def test_loss_ignores_ignore_value():
    head = SemSegFPNHead(
        SHAPES, num_classes=4, conv_dims=8, common_stride=4, ignore_value=255, loss_weight=0.5
    )
    with torch.no_grad():
        head.predictor.weight.zero_()
        head.predictor.bias.zero_()
    feats = {k: torch.randn(1, 8, 32 // s.stride, 32 // s.stride) for k, s in SHAPES.items()}
    targets = torch.full((1, 32, 32), 255, dtype=torch.long)
    targets[0, :4] = 2
    head.train()
    _, losses = head(feats, targets)
    # Uniform logits over 4 classes: cross-entropy log(4) on the labelled pixels, x 0.5.
    assert losses["loss_sem_seg"].item() == pytest.approx(0.5 * math.log(4), rel=1e-5)
    with pytest.raises(ValueError, match="targets"):
        head(feats, None)


def test_from_config_and_segmentor_inference():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert model.sem_seg_head.in_features == ["p2", "p3", "p4", "p5"]
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.zeros(3, 70, 90), "height": 35, "width": 45}])
    assert out["sem_seg"].shape == (5, 35, 45)
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p9"]
    with pytest.raises(KeyError, match="p9"):
        build_sem_seg_head(cfg, SHAPES)

"""Tests of torchdet.modeling.backbone.backbone and build."""

from __future__ import annotations

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling.backbone import BACKBONE_REGISTRY, Backbone, build_backbone


class _TinyBackbone(Backbone):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 5, 3, stride=2, padding=1)
        self._out_features = ["s2"]
        self._out_feature_channels = {"s2": 5}
        self._out_feature_strides = {"s2": 2}

    def forward(self, x):
        return {"s2": self.conv(x)}


def test_backbone_is_abstract():
    with pytest.raises(TypeError):
        Backbone()


def test_backbone_defaults_and_output_shape():
    b = _TinyBackbone(3)
    assert b.size_divisibility == 0
    assert b.padding_constraints == {}
    assert b.output_shape() == {"s2": ShapeSpec(channels=5, stride=2)}
    assert b(torch.zeros(1, 3, 8, 8))["s2"].shape == (1, 5, 4, 4)


def test_build_backbone_uses_registry_and_pixel_mean_channels():
    name = "_test_tiny_backbone"
    if name not in BACKBONE_REGISTRY:
        BACKBONE_REGISTRY.register(
            lambda cfg, input_shape: _TinyBackbone(input_shape.channels), name=name
        )
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.PIXEL_MEAN = [0.0]
    cfg.MODEL.PIXEL_STD = [1.0]
    b = build_backbone(cfg)
    assert b.conv.in_channels == 1
    assert build_backbone(cfg, ShapeSpec(channels=4)).conv.in_channels == 4


def test_build_backbone_rejects_non_backbone():
    name = "_test_not_a_backbone"
    if name not in BACKBONE_REGISTRY:
        BACKBONE_REGISTRY.register(lambda cfg, input_shape: torch.nn.Identity(), name=name)
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    with pytest.raises(TypeError, match="not a torchdet.modeling.Backbone"):
        build_backbone(cfg)

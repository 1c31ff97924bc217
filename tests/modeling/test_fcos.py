"""FCOS: location assignment, centerness targets, head outputs."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.modeling.backbone import build_backbone
from torchdet.modeling.meta_arch.fcos import FCOS, FCOSHead
from torchdet.structures import Boxes


def _model() -> FCOS:
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    backbone = build_backbone(cfg)
    feats = ["p3", "p4", "p5", "p6", "p7"]
    shapes = backbone.output_shape()
    head = FCOSHead(input_shape=[shapes[f] for f in feats], conv_dims=[16], num_classes=2)
    return FCOS(
        backbone=backbone,
        head=head,
        head_in_features=feats,
        num_classes=2,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )


def test_head_outputs_and_anchor_points():
    model = _model()
    assert model.anchor_generator.num_cell_anchors == [1] * 5
    logits, deltas, ctr = model.head(
        [torch.zeros(1, 16, 8 // 2**i + 1, 8 // 2**i + 1) for i in range(5)]
    )
    assert logits[0].shape == (1, 2, 9, 9) and deltas[0].shape == (1, 4, 9, 9)
    assert ctr[0].shape == (1, 1, 9, 9)
    assert model.head.ctrness.bias.item() == 0


def test_match_anchors_center_sampling_and_scale_ranges():
    model = _model()
    # One level-0 anchor (stride 8) at the box centre, one level-0 outside the sampling
    # radius, one last-level anchor (stride 128) at the centre.
    anchors = [
        Boxes(torch.tensor([[16.0, 16, 24, 24], [0, 0, 8, 8]])),
        Boxes(torch.tensor([[0.0, 0, 16, 16]])),
        Boxes(torch.tensor([[0.0, 0, 32, 32]])),
        Boxes(torch.tensor([[0.0, 0, 64, 64]])),
        Boxes(torch.tensor([[-44.0, -44, 84, 84]])),
    ]
    gt = Boxes(torch.tensor([[10.0, 10, 30, 30]]))
    m = model._match_anchors(gt, anchors)
    assert m.shape == (1, 6)
    # Anchor 0: centre (20, 20) inside, within 1.5 * 8 of the centre, largest side
    # distance 10 in [0, 32]. Anchor 1: centre (4, 4) outside the box. The level-1 anchor
    # (8, 8) is outside the box too; the stride-128 anchor (20, 20) needs distance > 512.
    assert (m[0] > 0).tolist() == [True, False, False, False, False, False]
    assert m[0, 0].item() == pytest.approx(1e8 - 400)


def test_centerness_targets():
    model = _model()
    anchors = [Boxes(torch.tensor([[8.0, 8, 16, 16]]))]  # centre (12, 12), size 8
    gt = [torch.tensor([[10.0, 4, 20, 16]])]  # l=2, t=8, r=8, b=4
    ctr = model.compute_ctrness_targets(anchors, gt)
    assert ctr.item() == pytest.approx(math.sqrt((2 / 8) * (4 / 8)))

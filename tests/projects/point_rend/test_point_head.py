"""StandardPointHead and the point loss."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.projects.point_rend import (
    StandardPointHead,
    add_pointrend_config,
    build_point_head,
    roi_mask_point_loss,
)
from torchdet.structures import Instances
from torchdet.utils.events import EventStorage


def _cfg(**point_head):
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 3
    cfg.MODEL.POINT_HEAD.FC_DIM = 8
    for k, v in point_head.items():
        setattr(cfg.MODEL.POINT_HEAD, k, v)
    return cfg


def test_layer_widths_follow_the_config():
    head = build_point_head(_cfg(), ShapeSpec(channels=5))
    assert isinstance(head, StandardPointHead)
    # Every layer sees the 3 coarse logits again.
    assert [m.in_channels for m in head.fc_layers] == [8, 11, 11]
    assert head.predictor.in_channels == 11 and head.predictor.out_channels == 3
    out = head(torch.randn(4, 5, 7), torch.randn(4, 3, 7))
    assert out.shape == (4, 3, 7)
    flat = build_point_head(
        _cfg(COARSE_PRED_EACH_LAYER=False, CLS_AGNOSTIC_MASK=True, NUM_FC=1), ShapeSpec(channels=5)
    )
    assert [m.in_channels for m in flat.fc_layers] == [8]
    assert flat.predictor.in_channels == 8 and flat.predictor.out_channels == 1


def test_forward_hand_computed():
    # One hidden layer of width 1 with unit weights: relu(sum of inputs), then the predictor.
    head = StandardPointHead(
        ShapeSpec(channels=1),
        num_classes=1,
        fc_dim=1,
        num_fc=1,
        cls_agnostic_mask=False,
        coarse_pred_each_layer=True,
    )
    with torch.no_grad():
        head.fc1.weight.fill_(1.0)
        head.fc1.bias.fill_(-1.0)
        head.predictor.weight.copy_(torch.tensor([[[2.0], [3.0]]]))
        head.predictor.bias.fill_(0.5)
    fine = torch.tensor([[[1.0, -2.0]]])
    coarse = torch.tensor([[[2.0, 1.0]]])
    # hidden = relu(fine + coarse - 1) = [2, 0]; out = 2 * hidden + 3 * coarse + 0.5.
    torch.testing.assert_close(head(fine, coarse), torch.tensor([[[10.5, 3.5]]]))


def _instances(classes):
    inst = Instances((8, 8))
    inst.gt_classes = torch.tensor(classes)
    return inst


def test_point_loss_hand_computed_with_ignored_points():
    logits = torch.tensor(
        [[[1.0, -1.0, 3.0], [2.0, 0.0, -2.0]], [[0.5, 0.5, 0.5], [4.0, -4.0, 0.0]]]
    )
    labels = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])
    with EventStorage() as storage:
        loss = roi_mask_point_loss(logits, [_instances([0]), _instances([1])], labels)
        accuracy = storage.latest()["point/accuracy"][0]
    # Region 0 uses class 0 logits [1, -1, 3] (last point ignored), region 1 class 1 [4, -4, 0].
    picked = torch.tensor([1.0, -1.0, 4.0, -4.0, 0.0])
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    expected = F.binary_cross_entropy_with_logits(picked, target, reduction="sum") / 6
    torch.testing.assert_close(loss, expected)
    assert accuracy == pytest.approx(2 / 5)


def test_point_loss_empty_and_class_agnostic():
    logits = torch.zeros(0, 3, 5, requires_grad=True)
    loss = roi_mask_point_loss(logits, [_instances([])], torch.zeros(0, 5))
    assert loss.item() == 0.0
    loss.backward()
    agnostic = torch.tensor([[[0.0, 0.0]]])
    loss = roi_mask_point_loss(agnostic, [_instances([2])], torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(loss, torch.tensor(0.6931472))

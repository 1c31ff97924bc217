"""StandardPointHead and the point loss."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.projects.point_rend import (
    ImplicitPointHead,
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


def test_implicit_point_head_hand_computed():
    # No positional encoding, 1 input channel, hidden width 2, 1 class, 2 layers:
    # 1*2 + 2*1 weights then 2 + 1 biases = 7 parameters per region.
    head = ImplicitPointHead(
        ShapeSpec(channels=1),
        num_classes=1,
        channels=2,
        num_layers=2,
        positional_encoding_enabled=False,
    )
    assert head.num_params == 7
    assert not any(True for _ in head.parameters())
    # Region 0: hidden = relu([1, -1] * f + [0, 1]); out = [1, 2] . hidden + 0.5.
    params = torch.tensor([[1.0, -1.0, 1.0, 2.0, 0.0, 1.0, 0.5]])
    feats = torch.tensor([[[2.0, -3.0]]])
    out = head(feats, torch.zeros(1, 2, 2), params)
    # f = 2: hidden [2, 0] -> 2.5; f = -3: hidden [0, 4] -> 8.5.
    torch.testing.assert_close(out, torch.tensor([[[2.5, 8.5]]]))
    assert head(torch.zeros(0, 1, 5), torch.zeros(0, 5, 2), torch.zeros(0, 7)).shape == (0, 1, 5)
    with pytest.raises(ValueError, match="parameters"):
        head(feats, torch.zeros(1, 2, 2), torch.zeros(1, 6))


def test_implicit_point_head_positional_encoding():
    head = build_point_head(
        _cfg(NAME="ImplicitPointHead", NUM_FC=2, FC_DIM=4), ShapeSpec(channels=5)
    )
    assert isinstance(head, ImplicitPointHead)
    assert head.in_channels == 256 + 5
    assert head.num_params == (261 * 4 + 4 * 4 + 4 * 3) + (4 + 4 + 3)
    assert head.positional_encoding_gaussian_matrix.shape == (2, 128)
    # With zero weights, the output is the last bias whatever the encoding.
    params = torch.zeros(2, head.num_params)
    params[:, -3:] = torch.tensor([1.0, 2.0, 3.0])
    out = head(torch.randn(2, 5, 6), torch.rand(2, 6, 2), params)
    torch.testing.assert_close(out, torch.tensor([1.0, 2.0, 3.0])[None, :, None].expand(2, 3, 6))

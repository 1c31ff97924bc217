"""Tests of torchdet.modeling.box_regression."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.modeling.box_regression import (
    Box2BoxTransform,
    Box2BoxTransformLinear,
    Box2BoxTransformRotated,
    _dense_box_regression_loss,
)
from torchdet.structures import Boxes


def _rel_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    return bool(((a - b).abs() <= rtol * b.abs().clamp(min=1.0)).all())


def test_box2box_deltas_parity(ops_cases):
    case = ops_cases["box2box_deltas"]
    t = Box2BoxTransform(weights=case["args"]["weights"])
    out = t.get_deltas(case["inputs"]["src"], case["inputs"]["target"])
    assert _rel_close(out, case["output"], 1e-5)


def test_box2box_apply_parity(ops_cases):
    case = ops_cases["box2box_apply"]
    assert case["args"]["scale_clamp"] == "log(1000/16)"
    t = Box2BoxTransform(weights=case["args"]["weights"])  # default clamp is log(1000/16)
    out = t.apply_deltas(case["inputs"]["deltas"], case["inputs"]["boxes"])
    assert out.shape == (100, 8)
    assert _rel_close(out, case["output"], 1e-5)


def test_box2box_rotated_deltas_parity(ops_cases):
    case = ops_cases["box2box_rotated_deltas"]
    t = Box2BoxTransformRotated(weights=case["args"]["weights"])
    out = t.get_deltas(case["inputs"]["src"], case["inputs"]["target"])
    assert (out - case["output"]).abs().max() <= 1e-4


def test_box2box_hand_computed():
    t = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    target = torch.tensor([[5.0, 0.0, 25.0, 20.0]])  # centre +10 in x, width x2
    deltas = t.get_deltas(src, target)
    expected = torch.tensor([[10.0 * 10 / 10, 0.0, 5.0 * math.log(2.0), 0.0]])
    assert torch.allclose(deltas, expected)
    assert torch.allclose(t.apply_deltas(deltas, src), target, atol=1e-5)


def test_box2box_scale_clamp():
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=math.log(4.0))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    out = t.apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 0.0]]), boxes)
    # width clamped to 4x: 40 wide, centred on 5
    assert torch.allclose(out, torch.tensor([[-15.0, 0.0, 25.0, 10.0]]))


def test_box2box_rotated_roundtrip():
    t = Box2BoxTransformRotated(weights=(10.0, 10.0, 5.0, 5.0, 1.0))
    src = torch.tensor([[10.0, 20.0, 8.0, 4.0, 30.0], [0.0, 0.0, 5.0, 5.0, -170.0]])
    target = torch.tensor([[12.0, 19.0, 16.0, 3.0, -40.0], [1.0, 2.0, 6.0, 4.0, 175.0]])
    deltas = t.get_deltas(src, target)
    # angle difference is wrapped: -170 -> 175 is -15 degrees
    assert math.isclose(deltas[1, 4].item(), math.radians(-15.0), abs_tol=1e-5)
    assert torch.allclose(t.apply_deltas(deltas, src), target, atol=1e-4)


def test_box2box_linear_roundtrip_and_relu():
    t = Box2BoxTransformLinear(normalize_by_size=True)
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 24.0, 24.0]])
    target = torch.tensor([[-4.0, 1.0, 10.0, 6.0], [10.0, 3.0, 30.0, 20.0]])
    deltas = t.get_deltas(anchors, target)
    # anchor 0 centre (4, 4), size 8: l = 8/8, t = 3/8, r = 6/8, b = 2/8
    assert torch.allclose(deltas[0], torch.tensor([1.0, 0.375, 0.75, 0.25]))
    assert torch.allclose(t.apply_deltas(deltas, anchors), target)
    # negative distances are clamped to 0 -> a point box at the centre
    point = t.apply_deltas(-torch.ones(1, 4), anchors[:1])
    assert torch.allclose(point, torch.tensor([[4.0, 4.0, 4.0, 4.0]]))


def test_box2box_errors():
    with pytest.raises(ValueError, match="4 weights"):
        Box2BoxTransform(weights=(1.0, 1.0))
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="src_boxes"):
        t.get_deltas(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="deltas"):
        t.apply_deltas(torch.zeros(3, 6), torch.zeros(3, 4))


def test_dense_box_regression_loss_smooth_l1_and_giou():
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    anchors = [
        Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]])),
        Boxes(torch.tensor([[0.0, 0.0, 20.0, 20.0]])),
    ]
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 22.0, 20.0]])]  # N=1, R=2
    fg = torch.tensor([[True, True]])
    # predictions exactly the gt deltas for anchor 0; anchor 1 off by 0.5 in dx (gt dx = 0.1)
    pred = [torch.zeros(1, 1, 4), torch.tensor([[[0.6, 0.0, 0.0, 0.0]]])]
    loss = _dense_box_regression_loss(anchors, t, pred, gt, fg, "smooth_l1", 0.0)
    assert math.isclose(loss.item(), 0.5, rel_tol=1e-5)
    # only foreground anchors count
    loss_bg = _dense_box_regression_loss(anchors, t, pred, gt, torch.tensor([[True, False]]))
    assert loss_bg.item() == 0.0
    # giou on decoded boxes: anchor 0 is exact (0); anchor 1 decodes to x 12..32 vs gt 2..22,
    # IoU = 10/30 and the enclosing box is the union, so the giou loss is 1 - 1/3.
    giou = _dense_box_regression_loss(anchors, t, pred, gt, fg, "giou")
    assert math.isclose(giou.item(), 1 - 1 / 3, rel_tol=1e-5)
    with pytest.raises(ValueError, match="loss type"):
        _dense_box_regression_loss(anchors, t, pred, gt, fg, "l2")


@pytest.mark.parametrize("loss_type", ["diou", "ciou"])
def test_dense_box_regression_loss_diou_ciou(loss_type):
    t = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])]
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]])]
    pred = [torch.zeros(1, 2, 4)]  # decodes to the anchors
    exact = _dense_box_regression_loss(
        anchors, t, pred, gt, torch.tensor([[True, False]]), loss_type
    )
    assert exact.abs().item() < 1e-6
    # anchor 1 vs its gt: touching 10x10 boxes, IoU 0, centre distance 10, enclosing diagonal^2 =
    # 20^2 + 10^2 = 500 -> diou = 1 + 100/500; same aspect ratio, so ciou adds nothing.
    loss = _dense_box_regression_loss(
        anchors, t, pred, gt, torch.tensor([[False, True]]), loss_type
    )
    assert math.isclose(loss.item(), 1.2, rel_tol=1e-4)

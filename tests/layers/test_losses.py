"""Tests for ``torchdet.layers.losses`` against hand-computed values and direct formulas, with
gradient checks in double precision."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.layers import (
    ciou_loss,
    diou_loss,
    giou_loss,
    sigmoid_focal_loss,
    sigmoid_focal_loss_star,
    smooth_l1_loss,
)


# ------------------------------------------------------------------------------------------------
# smooth L1
# ------------------------------------------------------------------------------------------------
def test_smooth_l1_at_beta_boundaries():
    target = torch.zeros(5)
    x = torch.tensor([0.0, 0.5, 1.0, -2.0, 3.0])
    # beta = 1: 0.5 x^2 below 1, |x| - 0.5 from 1 on (continuous at |x| = 1).
    assert smooth_l1_loss(x, target, beta=1.0).tolist() == [0.0, 0.125, 0.5, 1.5, 2.5]
    # beta = 2: 0.25 x^2 below 2.
    assert smooth_l1_loss(x, target, beta=2.0).tolist() == [0.0, 0.0625, 0.25, 1.0, 2.0]
    # beta below 1e-5 is exactly L1 (no division by a tiny beta).
    for beta in (0.0, 9.9e-6):
        assert smooth_l1_loss(x, target, beta=beta).tolist() == [0.0, 0.5, 1.0, 2.0, 3.0]


def test_smooth_l1_reductions_and_empty():
    x, y = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])
    assert smooth_l1_loss(x, y, 1.0, reduction="sum").item() == 0.5 + 2.5
    assert smooth_l1_loss(x, y, 1.0, reduction="mean").item() == 1.5
    empty = torch.zeros(0, 4, requires_grad=True)
    loss = smooth_l1_loss(empty, torch.zeros(0, 4), 0.1, reduction="mean")
    assert loss.item() == 0.0
    loss.backward()  # still connected to the graph
    assert smooth_l1_loss(empty, torch.zeros(0, 4), 0.1).shape == (0, 4)


# ------------------------------------------------------------------------------------------------
# focal losses
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1, 2.0), (0.5, 0.0), (0.75, 1.5)])
def test_sigmoid_focal_loss_matches_formula(alpha, gamma):
    x = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0, 2.0])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    p = 1 / (1 + torch.exp(-x.double()))
    p_t = torch.where(y > 0, p, 1 - p)
    expected = -((1 - p_t) ** gamma) * torch.log(p_t)
    if alpha >= 0:
        expected = expected * torch.where(y > 0, alpha, 1 - alpha)
    out = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
    torch.testing.assert_close(out, expected.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        sigmoid_focal_loss(x, y, alpha, gamma, reduction="sum"), expected.sum().float()
    )
    torch.testing.assert_close(
        sigmoid_focal_loss(x, y, alpha, gamma, reduction="mean"), expected.mean().float()
    )


def test_sigmoid_focal_loss_hand_value():
    # x = 0: p = 0.5, positive: CE = log 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25.
    out = sigmoid_focal_loss(torch.zeros(1), torch.ones(1), alpha=0.25, gamma=2)
    assert out.item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    # gamma = 0 and no alpha is plain binary cross-entropy.
    out = sigmoid_focal_loss(torch.tensor([2.0]), torch.tensor([0.0]), alpha=-1, gamma=0)
    assert out.item() == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-6)


def test_sigmoid_focal_loss_star_matches_formula():
    x = torch.tensor([-2.0, 0.0, 1.5, 3.0])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    for alpha, gamma in ((-1, 1.0), (0.25, 2.0)):
        x_t = torch.where(y > 0, x, -x).double()
        expected = -torch.log(torch.sigmoid(gamma * x_t)) / gamma
        if alpha >= 0:
            expected = expected * torch.where(y > 0, alpha, 1 - alpha)
        out = sigmoid_focal_loss_star(x, y, alpha=alpha, gamma=gamma)
        torch.testing.assert_close(out, expected.float(), rtol=1e-5, atol=1e-7)


def test_focal_losses_empty_mean_is_zero():
    for fn in (sigmoid_focal_loss, sigmoid_focal_loss_star):
        out = fn(torch.zeros(0, 3), torch.zeros(0, 3), reduction="mean")
        assert out.item() == 0.0


# ------------------------------------------------------------------------------------------------
# IoU losses
# ------------------------------------------------------------------------------------------------
def test_giou_identical_and_disjoint():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 6.0, 5.0]])
    torch.testing.assert_close(giou_loss(a, a), torch.zeros(2), atol=1e-6, rtol=0)
    # Disjoint unit squares one unit apart: IoU 0, enclosing area 3, union 2 -> GIoU = -1/3.
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    out = giou_loss(a[:1], b)
    assert out.item() == pytest.approx(1 + 1 / 3, abs=1e-6)
    # Overlapping: [0,0,2,2] vs [1,1,3,3]: IoU 1/7, enclosing 9, union 7 -> GIoU 1/7 - 2/9.
    c = giou_loss(torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 1, 3, 3]))
    assert c.item() == pytest.approx(1 - (1 / 7 - 2 / 9), abs=1e-6)


def test_diou_hand_value():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3]])
    # IoU 1/7; centers (1,1), (2,2): squared distance 2; enclosing [0,0,3,3]: diagonal^2 18.
    assert diou_loss(a, b).item() == pytest.approx(1 - 1 / 7 + 2 / 18, abs=1e-6)
    torch.testing.assert_close(diou_loss(a, a), torch.zeros(1), atol=1e-6, rtol=0)


def test_ciou_hand_value():
    a = torch.tensor([[0.0, 0, 2, 1]])
    b = torch.tensor([[0.0, 0, 1, 2]])
    iou = 1 / 3  # intersection 1, union 3
    center = 0.5 / 8  # centers (1, .5), (.5, 1); enclosing [0,0,2,2]
    v = 4 / math.pi**2 * (math.atan(1 / 2) - math.atan(2)) ** 2
    alpha = v / (1 - iou + v)
    assert ciou_loss(a, b).item() == pytest.approx(1 - iou + center + alpha * v, abs=1e-6)
    # Same aspect ratio: v = 0, CIoU = DIoU.
    c = torch.tensor([[0.0, 0, 2, 2]])
    d = torch.tensor([[1.0, 1, 3, 3]])
    torch.testing.assert_close(ciou_loss(c, d), diou_loss(c, d))


@pytest.mark.parametrize("fn", [giou_loss, diou_loss, ciou_loss])
def test_iou_losses_reductions_and_empty(fn):
    a = torch.tensor([[0.0, 0, 2, 2], [0.0, 0, 1, 1]])
    b = torch.tensor([[1.0, 1, 3, 3], [0.0, 0, 1, 2]])
    per_box = fn(a, b)
    assert per_box.shape == (2,)
    torch.testing.assert_close(fn(a, b, reduction="sum"), per_box.sum())
    torch.testing.assert_close(fn(a, b, reduction="mean"), per_box.mean())
    empty = torch.zeros(0, 4, requires_grad=True)
    loss = fn(empty, torch.zeros(0, 4), reduction="mean")
    assert loss.item() == 0.0
    loss.backward()


@pytest.mark.parametrize("fn", [giou_loss, diou_loss, ciou_loss])
def test_iou_losses_reject_bad_input(fn):
    with pytest.raises(ValueError, match="bad box"):
        fn(torch.tensor([[2.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        fn(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="reduction"):
        fn(torch.zeros(1, 4), torch.zeros(1, 4), reduction="avg")


def test_other_losses_reject_bad_reduction_and_shapes():
    with pytest.raises(ValueError, match="reduction"):
        smooth_l1_loss(torch.zeros(2), torch.zeros(2), 1.0, reduction="max")
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="beta"):
        smooth_l1_loss(torch.zeros(2), torch.zeros(2), -1.0)


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------
def _overlapping_boxes(g: torch.Generator, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 + 1.5
    a = torch.cat([xy, xy + wh], 1)
    b = a + torch.rand(n, 4, generator=g, dtype=torch.float64) * 0.6 - 0.3
    return a, b


@pytest.mark.parametrize("fn", [giou_loss, diou_loss])
def test_iou_losses_gradcheck(fn):
    g = torch.Generator().manual_seed(0)
    a, b = _overlapping_boxes(g)
    a.requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, reduction="sum"), (a, b))


def test_ciou_gradient_treats_alpha_as_constant():
    # CIoU's alpha is computed without gradient, so its backward is that of DIoU + alpha * v with
    # alpha frozen (gradcheck against finite differences would not hold by design).
    g = torch.Generator().manual_seed(0)
    a, b = _overlapping_boxes(g)
    a.requires_grad_(True)
    (grad,) = torch.autograd.grad(ciou_loss(a, b, reduction="sum"), a)

    def v_term(x):
        w, h = x[:, 2] - x[:, 0], x[:, 3] - x[:, 1]
        wg, hg = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        return 4 / math.pi**2 * (torch.atan(wg / hg) - torch.atan(w / h)) ** 2

    with torch.no_grad():
        ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
        iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
        inter = ix * iy
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        iou = inter / (area(a) + area(b) - inter + 1e-7)
        alpha = v_term(a) / (1 - iou + v_term(a) + 1e-7)
    reference = diou_loss(a, b, reduction="sum") + (alpha * v_term(a)).sum()
    (expected,) = torch.autograd.grad(reference, a)
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(ciou_loss(a, b, reduction="sum"), reference)


def test_pointwise_losses_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1, 1, 0, 1, 0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: sigmoid_focal_loss(v, y, 0.25, 2, "sum"), (x,))
    assert torch.autograd.gradcheck(lambda v: sigmoid_focal_loss_star(v, y, 0.25, 2, "sum"), (x,))
    target = torch.zeros(6, dtype=torch.float64)
    # Away from the kink at |x| = beta.
    assert torch.autograd.gradcheck(lambda v: smooth_l1_loss(v, target, 0.37, "sum"), (x,))

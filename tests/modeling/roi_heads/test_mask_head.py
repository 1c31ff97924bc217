"""Mask head: parameter names, loss and inference on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.layers import ShapeSpec
from torchdet.modeling.roi_heads import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from torchdet.structures import BitMasks, Boxes, Instances


def test_head_names_shapes_and_init():
    head = MaskRCNNConvUpsampleHead(
        ShapeSpec(channels=8, height=7, width=7), num_classes=3, conv_dims=[4, 4, 6]
    )
    names = [n for n, _ in head.named_parameters()]
    assert names == [
        "mask_fcn1.weight",
        "mask_fcn1.bias",
        "mask_fcn2.weight",
        "mask_fcn2.bias",
        "deconv.weight",
        "deconv.bias",
        "predictor.weight",
        "predictor.bias",
    ]
    assert head.predictor.weight.std() < 0.002
    assert head.layers(torch.zeros(2, 8, 7, 7)).shape == (2, 3, 14, 14)


def _instances(masks: torch.Tensor, classes: list[int]) -> Instances:
    n, h, w = masks.shape
    inst = Instances((h, w))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0, w, h]] * n))
    inst.gt_masks = BitMasks(masks)
    inst.gt_classes = torch.tensor(classes)
    return inst


def test_loss_hand_computed():
    gt = torch.zeros(2, 4, 4, dtype=torch.bool)
    gt[0, :2] = True
    inst = _instances(gt, [0, 1])
    logits = torch.zeros(2, 2, 4, 4, requires_grad=True)
    loss = mask_rcnn_loss(logits, [inst])
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    # Only the ground-truth class's mask gets a gradient.
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[1, 0].abs().sum() == 0
    # d BCE / d logit = (sigmoid(0) - target) / numel
    assert logits.grad[0, 0, 0, 0].item() == pytest.approx(-0.5 / 32)
    assert logits.grad[0, 0, 3, 3].item() == pytest.approx(0.5 / 32)

    confident = torch.full((2, 1, 4, 4), -20.0)
    confident[0, 0, :2] = 20.0
    assert mask_rcnn_loss(confident, [inst]).item() < 1e-6  # class-agnostic, all correct


def test_loss_empty_is_differentiable_zero():
    logits = torch.zeros(0, 2, 4, 4, requires_grad=True)
    loss = mask_rcnn_loss(logits, [_instances(torch.zeros(0, 4, 4, dtype=torch.bool), [])])
    assert loss.item() == 0
    loss.backward()


def test_inference_picks_the_predicted_class():
    logits = torch.zeros(3, 2, 2, 2)
    logits[:, 1] = 2.0
    a = Instances((8, 8), pred_classes=torch.tensor([1, 0]))
    b = Instances((8, 8), pred_classes=torch.tensor([1]))
    mask_rcnn_inference(logits, [a, b])
    assert a.pred_masks.shape == (2, 1, 2, 2) and b.pred_masks.shape == (1, 1, 2, 2)
    s = torch.sigmoid(torch.tensor(2.0)).item()
    assert a.pred_masks[0].flatten().tolist() == pytest.approx([s] * 4)
    assert a.pred_masks[1].flatten().tolist() == pytest.approx([0.5] * 4)
    empty = Instances((8, 8), pred_classes=torch.zeros(0, dtype=torch.int64))
    mask_rcnn_inference(torch.zeros(0, 2, 2, 2), [empty])
    assert empty.pred_masks.shape == (0, 1, 2, 2)

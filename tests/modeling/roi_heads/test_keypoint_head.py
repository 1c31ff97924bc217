"""Keypoint head: parameter names, loss and inference on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.layers import ShapeSpec
from torchdet.modeling.roi_heads import (
    KRCNNConvDeconvUpsampleHead,
    keypoint_rcnn_inference,
    keypoint_rcnn_loss,
)
from torchdet.structures import Boxes, Instances, Keypoints


def test_head_names_and_output_size():
    head = KRCNNConvDeconvUpsampleHead(
        ShapeSpec(channels=8, height=14, width=14), num_keypoints=3, conv_dims=[4, 4]
    )
    names = [n for n, _ in head.named_parameters()]
    assert names == [
        "conv_fcn1.weight",
        "conv_fcn1.bias",
        "conv_fcn2.weight",
        "conv_fcn2.bias",
        "score_lowres.weight",
        "score_lowres.bias",
    ]
    # 14 -> deconv x2 -> bilinear x2
    assert head.layers(torch.zeros(1, 8, 14, 14)).shape == (1, 3, 56, 56)
    assert head.score_lowres.bias.abs().sum() == 0


def _instances() -> Instances:
    inst = Instances((100, 100))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 8, 8], [10, 10, 18, 18]]))
    # Keypoint 2 of instance 0 is invisible; instance 1's keypoint 0 is outside its box.
    inst.gt_keypoints = Keypoints(
        torch.tensor(
            [
                [[1.0, 1, 2], [7, 7, 2], [3, 3, 0]],
                [[0.0, 0, 2], [11, 11, 1], [17, 12, 2]],
            ]
        )
    )
    return inst


def test_loss_uniform_logits_and_normalizers():
    logits = torch.zeros(2, 3, 4, 4, requires_grad=True)
    # 4 visible keypoints inside their boxes; uniform logits over 16 cells: log(16) each.
    loss = keypoint_rcnn_loss(logits, [_instances()], normalizer=None)
    assert loss.item() == pytest.approx(math.log(16))
    loss = keypoint_rcnn_loss(logits, [_instances()], normalizer=8.0)
    assert loss.item() == pytest.approx(4 * math.log(16) / 8)
    loss.backward()
    # Instance 0's keypoint (1, 1) falls in cell (0, 0) of its 8 px box at 4x4: its gradient
    # there is (1/16 - 1) / 8.
    assert logits.grad[0, 0, 0, 0].item() == pytest.approx((1 / 16 - 1) / 8)
    assert logits.grad[0, 2].abs().sum() == 0  # invisible keypoint


def test_loss_without_visible_keypoints_is_zero():
    inst = _instances()
    inst.gt_keypoints.tensor[..., 2] = 0
    logits = torch.zeros(2, 3, 4, 4, requires_grad=True)
    loss = keypoint_rcnn_loss(logits, [inst], normalizer=None)
    assert loss.item() == 0
    loss.backward()


def test_inference_sets_keypoints_and_heatmaps():
    logits = torch.full((1, 2, 4, 4), -10.0)
    logits[0, 0, 1, 2] = 10.0  # keypoint 0 at cell (row 1, col 2)
    logits[0, 1, 3, 0] = 10.0
    inst = Instances((50, 50), pred_boxes=Boxes(torch.tensor([[10.0, 20, 18, 28]])))
    keypoint_rcnn_inference(logits, [inst])
    assert inst.pred_keypoints.shape == (1, 2, 3)
    assert inst.pred_keypoint_heatmaps.shape == (1, 2, 4, 4)
    # The 4x4 map is resized to the 8x8 box: cell (1, 2) covers rows 2-5 x cols 4-7; the
    # argmax after bicubic resizing lies in that cell.
    x, y, score = inst.pred_keypoints[0, 0].tolist()
    assert 14 <= x <= 18 and 22 <= y <= 26 and 0 < score <= 1

"""fast_rcnn_inference and FastRCNNOutputLayers: hand-computed detections and losses."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.layers import ShapeSpec
from torchdet.modeling.box_regression import Box2BoxTransform
from torchdet.modeling.roi_heads import FastRCNNOutputLayers, fast_rcnn_inference
from torchdet.structures import Boxes, Instances


def test_inference_threshold_nms_topk_and_clip():
    # 3 proposals, 2 classes (+ background), class-specific boxes.
    boxes = torch.tensor(
        [
            [0, 0, 10, 10, 0, 0, 10, 10],
            [1, 1, 11, 11, 50, 50, 60, 60],
            [-5, 0, 10, 200, 20, 20, 30, 30],
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor(
        [[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.3, 0.6, 0.1]], dtype=torch.float32
    )
    (res,), (kept,) = fast_rcnn_inference([boxes], [scores], [(100, 100)], 0.1, 0.5, -1)
    # Class 0: proposals 0 (0.9), 1 (0.8, IoU 0.68 with 0: suppressed), 2 (0.3).
    # Class 1: proposals 1 (0.15), 2 (0.6); 0 is below the threshold.
    assert res.scores.tolist() == pytest.approx([0.9, 0.6, 0.3, 0.15])
    assert res.pred_classes.tolist() == [0, 1, 0, 1]
    assert kept.tolist() == [0, 2, 2, 1]
    # Proposal 2's class-0 box is clipped to the 100 x 100 image.
    assert res.pred_boxes.tensor[2].tolist() == [0, 0, 10, 100]
    (top2,), _ = fast_rcnn_inference([boxes], [scores], [(100, 100)], 0.1, 0.5, 2)
    assert top2.scores.tolist() == pytest.approx([0.9, 0.6])


def test_inference_class_agnostic_and_non_finite_rows():
    boxes = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [float("nan"), 0, 1, 1]])
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.9, 0.0, 0.1]])
    (res,), (kept,) = fast_rcnn_inference([boxes], [scores], [(50, 50)], 0.15, 0.5, 100)
    assert kept.tolist() == [1, 0, 0]
    assert res.pred_classes.tolist() == [1, 0, 1]
    assert res.pred_boxes.tensor.tolist() == [[20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 10, 10]]


def test_inference_empty():
    (res,), (kept,) = fast_rcnn_inference(
        [torch.zeros(0, 12)], [torch.zeros(0, 4)], [(10, 10)], 0.05, 0.5, 100
    )
    assert len(res) == 0 and kept.numel() == 0
    assert res.pred_boxes.tensor.shape == (0, 4)
    with pytest.raises(ValueError, match="must agree"):
        fast_rcnn_inference([torch.zeros(0, 4)], [], [(1, 1)], 0.05, 0.5, 1)


def _predictor(**kwargs) -> FastRCNNOutputLayers:
    return FastRCNNOutputLayers(
        ShapeSpec(channels=8, height=2, width=2),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        num_classes=2,
        **kwargs,
    )


def test_parameter_names_shapes_and_init():
    p = _predictor()
    assert p.cls_score.weight.shape == (3, 32)
    assert p.bbox_pred.weight.shape == (8, 32)
    assert p.cls_score.bias.abs().sum() == 0 and p.bbox_pred.bias.abs().sum() == 0
    assert 0.005 < p.cls_score.weight.std() < 0.02
    assert p.bbox_pred.weight.std() < 0.002
    agnostic = _predictor(cls_agnostic_bbox_reg=True)
    assert agnostic.bbox_pred.weight.shape == (4, 32)
    scores, deltas = p(torch.zeros(5, 8, 2, 2))
    assert scores.shape == (5, 3) and deltas.shape == (5, 8)


def _proposals() -> list[Instances]:
    inst = Instances((100, 100))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]))
    inst.gt_boxes = Boxes(torch.tensor([[1.0, 0, 11, 10], [0, 0, 1, 1]]))
    inst.gt_classes = torch.tensor([1, 2])  # a foreground and a background proposal
    return [inst]


def test_losses_hand_computed():
    p = _predictor()
    scores = torch.zeros(2, 3, requires_grad=True)
    deltas = torch.zeros(2, 8, requires_grad=True)
    losses = p.losses((scores, deltas), _proposals())
    # Uniform logits: cross-entropy log(3).
    assert losses["loss_cls"].item() == pytest.approx(math.log(3))
    # Foreground proposal 0 (class 1): target dx = 10 * 1 / 10 = 1, others 0; L1 (beta 0)
    # summed, divided by the 2 proposals.
    assert losses["loss_box_reg"].item() == pytest.approx(0.5)
    sum(losses.values()).backward()
    # Only class 1's deltas of the foreground proposal get a box gradient.
    assert deltas.grad[0, 4].item() == pytest.approx(-0.5)
    assert deltas.grad[1].abs().sum() == 0 and deltas.grad[0, :4].abs().sum() == 0


def test_losses_sigmoid_ce_weights_and_giou():
    p = _predictor(use_sigmoid_ce=True, loss_weight={"loss_box_reg": 2.0}, box_reg_loss_type="giou")
    scores = torch.zeros(2, 3)
    deltas = torch.zeros(2, 8)
    losses = p.losses((scores, deltas), _proposals())
    # Zero logits: BCE log(2) for each of the 2 foreground columns, averaged over proposals.
    assert losses["loss_cls"].item() == pytest.approx(2 * math.log(2))
    # Undeformed proposal [0,0,10,10] vs gt [1,0,11,10]: IoU 90/110, enclosing = union, so
    # GIoU loss 1 - 9/11, / 2 proposals, x 2 weight.
    assert losses["loss_box_reg"].item() == pytest.approx(1 - 9 / 11, rel=1e-5)


def test_losses_without_ground_truth_and_empty():
    p = _predictor()
    inst = Instances((50, 50))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10]]))
    inst.gt_classes = torch.tensor([2])  # background, and no gt_boxes field
    losses = p.losses((torch.zeros(1, 3), torch.zeros(1, 8)), [inst])
    assert losses["loss_box_reg"].item() == 0
    scores = torch.zeros(0, 3, requires_grad=True)
    losses = p.losses((scores, torch.zeros(0, 8, requires_grad=True)), [])
    assert losses["loss_cls"].item() == 0 and losses["loss_box_reg"].item() == 0
    losses["loss_cls"].backward()


def test_fed_loss_classes_include_ground_truth():
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0])
    classes = FastRCNNOutputLayers.get_fed_loss_classes(torch.tensor([1, 1, 4]), 3, 4, weight)
    # gt classes 1 and 4 (4 is background, kept in the unique set), one sampled among {0, 2}.
    assert classes[:2].tolist() == [1, 4]
    assert classes[2].item() in (0, 2)
    with pytest.raises(ValueError, match="use_sigmoid_ce"):
        _predictor(use_fed_loss=True)


def test_predict_boxes_probs_and_gt_class_boxes():
    p = _predictor()
    props = _proposals()
    scores = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    deltas = torch.zeros(2, 8)
    deltas[0, 4] = 10.0  # class 1 box of proposal 0 moves by one width
    (boxes,) = p.predict_boxes((scores, deltas), props)
    assert boxes.shape == (2, 8)
    assert boxes[0, 4:].tolist() == [10, 0, 20, 10]
    (probs,) = p.predict_probs((scores, deltas), props)
    assert probs[0].tolist() == pytest.approx([1 / 3] * 3)
    assert probs.sum(dim=1).tolist() == pytest.approx([1, 1])
    (gt_boxes,) = p.predict_boxes_for_gt_classes((scores, deltas), props)
    assert gt_boxes.tolist() == [[10, 0, 20, 10], [20, 20, 40, 40]]
    results, _ = p.inference((scores, deltas), props)
    assert len(results) == 1 and results[0].image_size == (100, 100)

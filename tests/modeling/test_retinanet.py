"""RetinaNet: head layout and init, anchor labelling, losses and inference on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling import build_model
from torchdet.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from torchdet.modeling.meta_arch.retinanet import RetinaNetHead
from torchdet.structures import Boxes, Instances
from torchdet.utils.events import EventStorage


def _cfg():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [
        [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [32, 64, 128, 256, 512]
    ]
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_head_names_and_prior_init():
    shapes = [ShapeSpec(channels=16, stride=s) for s in (8, 16)]
    head = RetinaNetHead(
        input_shape=shapes, num_classes=3, num_anchors=9, conv_dims=[16, 16], prior_prob=0.01
    )
    names = {n for n, _ in head.named_parameters()}
    assert {"cls_subnet.0.weight", "cls_subnet.2.weight", "bbox_subnet.2.bias"} <= names
    assert head.cls_score.weight.shape == (27, 16, 3, 3)
    assert head.bbox_pred.weight.shape == (36, 16, 3, 3)
    assert head.cls_score.bias[0].item() == pytest.approx(-math.log(99))
    logits, deltas = head([torch.zeros(2, 16, 4, 4), torch.zeros(2, 16, 2, 2)])
    # Zero features: every anchor starts at probability 0.01.
    assert torch.sigmoid(logits[1]).flatten().tolist() == pytest.approx([0.01] * 2 * 27 * 4)
    assert deltas[0].shape == (2, 36, 4, 4)
    with pytest.raises(ValueError, match="feature maps"):
        head([torch.zeros(1, 16, 4, 4)])


def test_permute_to_N_HWA_K():
    x = torch.arange(2 * 6 * 2 * 3).float().view(2, 6, 2, 3)  # N=2, A=3, K=2, H=2, W=3
    y = permute_to_N_HWA_K(x, 2)
    assert y.shape == (2, 18, 2)
    # anchor (h=1, w=2, a=1), class 1 is channel a * K + k = 3 of cell (1, 2)
    assert y[1, (1 * 3 + 2) * 3 + 1, 1] == x[1, 3, 1, 2]


def test_label_anchors_and_losses():
    model = build_model(_cfg())
    anchors = [Boxes(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 4], [50, 50, 60, 60]]))]
    gt = Instances(
        (64, 64), gt_boxes=Boxes(torch.tensor([[0.0, 0, 10, 10]])), gt_classes=torch.tensor([2])
    )
    (labels,), (boxes,) = model.label_anchors(anchors, [gt])
    # IoU 1 (fg), 0.4 (ignored band [0.4, 0.5)), 0 (background)
    assert labels.tolist() == [2, -1, 3]
    assert boxes[0].tolist() == [0, 0, 10, 10]
    empty = Instances((64, 64), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0).long())
    (labels,), (boxes,) = model.label_anchors(anchors, [empty])
    assert labels.tolist() == [3, 3, 3] and boxes.abs().sum() == 0

    logits = [torch.zeros(1, 3, 3, requires_grad=True)]
    deltas = [torch.zeros(1, 3, 4, requires_grad=True)]
    (labels,), (boxes,) = model.label_anchors(anchors, [gt])
    with EventStorage(0):
        losses = model.losses(anchors, logits, [labels], deltas, [boxes])
    # Focal loss at p = 0.5 on the 2 non-ignored anchors x 3 classes: positives
    # 0.25 * 0.25 * log 2, negatives 0.75 * 0.25 * log 2; normaliser 0.9 * 100 + 0.1 * 1.
    per = 0.25 * math.log(2)
    expected = (0.25 * per + 5 * 0.75 * per) / 90.1
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_box_reg"].item() == 0  # zero deltas for an exact anchor


def test_inference_end_to_end_shapes():
    model = build_model(_cfg())
    model.eval()
    image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 48, "width": 64}])
    inst = out["instances"]
    assert inst.image_size == (48, 64)
    assert len(inst) <= 100
    assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes"}
    if len(inst):
        assert inst.scores.min() > 0.05 and inst.pred_classes.max() < 3

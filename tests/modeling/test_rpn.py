"""Tests of torchdet.modeling.proposal_generator (RPN, RRPN, proposal utilities)."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling.anchor_generator import DefaultAnchorGenerator, RotatedAnchorGenerator
from torchdet.modeling.box_regression import Box2BoxTransform
from torchdet.modeling.matcher import Matcher
from torchdet.modeling.proposal_generator import (
    RPN,
    RRPN,
    StandardRPNHead,
    add_ground_truth_to_proposals,
    build_proposal_generator,
    find_top_rpn_proposals,
)
from torchdet.structures import Boxes, ImageList, Instances, RotatedBoxes


def _tiny_rpn(**kwargs) -> RPN:
    """One level of stride 8 with one 8x8 anchor per cell, centred on the cell corner."""
    args = dict(
        in_features=["p3"],
        head=StandardRPNHead(in_channels=4, num_anchors=1),
        anchor_generator=DefaultAnchorGenerator(
            sizes=[[8]], aspect_ratios=[[1.0]], strides=[8], offset=0.0
        ),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(100, 100),
        post_nms_topk=(50, 50),
    )
    args.update(kwargs)
    return RPN(**args)


def _instances(size, boxes) -> Instances:
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return inst


def test_rpn_losses_hand_computed():
    rpn = _tiny_rpn().train()
    for p in rpn.rpn_head.parameters():  # zero head: all logits 0, all deltas 0
        torch.nn.init.zeros_(p)
    images = ImageList(torch.zeros(2, 3, 32, 32), [(32, 32), (32, 32)])
    features = {"p3": torch.randn(2, 4, 4, 4)}
    # Anchors are [8j - 4, 8i - 4, 8j + 4, 8i + 4]. Image 0's gt is exactly anchor (1, 1);
    # image 1's is that anchor shifted right by 1 px (IoU 7/9 > 0.7, dx = 1/8).
    gt = [_instances((32, 32), [[4, 4, 12, 12]]), _instances((32, 32), [[5, 4, 13, 12]])]
    _, losses = rpn(images, features, gt)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    # 16 anchors per image, 1 positive + 15 negatives sampled; BCE(0, y) = log 2 each.
    assert math.isclose(losses["loss_rpn_cls"].item(), 32 * math.log(2) / 512, rel_tol=1e-5)
    # L1 on deltas: image 0 contributes 0 (exact anchor), image 1 |0 - 1/8|.
    assert math.isclose(losses["loss_rpn_loc"].item(), 0.125 / 512, rel_tol=1e-5)

    # The same with only image 0: the exact match gives a zero box loss.
    _, losses0 = rpn(
        ImageList(images.tensor[:1], images.image_sizes[:1]), {"p3": features["p3"][:1]}, gt[:1]
    )
    assert losses0["loss_rpn_loc"].item() == 0.0


def test_rpn_label_counts_and_sampling():
    rpn = _tiny_rpn(batch_size_per_image=8, positive_fraction=0.25)
    anchors = rpn.anchor_generator([torch.zeros(1, 4, 4, 4)])
    # two gt boxes, each exactly an anchor: 2 positives; 14 negatives
    gt = [_instances((32, 32), [[4, 4, 12, 12], [20, 20, 28, 28]])]
    labels, matched = rpn.label_and_sample_anchors(anchors, gt)
    assert labels[0].shape == (16,) and matched[0].shape == (16, 4)
    assert (labels[0] == 1).sum().item() == 2
    assert (labels[0] == 0).sum().item() == 6  # 8 sampled in all
    assert (labels[0] == -1).sum().item() == 8
    pos = torch.nonzero(labels[0] == 1).flatten()
    assert torch.equal(matched[0][pos], Boxes.cat(anchors).tensor[pos])

    # low-quality matches: a tiny gt (IoU 9/64 < 0.3 with its best anchor) still gets a positive
    labels, matched = _tiny_rpn().label_and_sample_anchors(
        anchors, [_instances((32, 32), [[0, 0, 3, 3]])]
    )
    assert (labels[0] == 1).sum().item() == 1
    assert torch.equal(matched[0][labels[0] == 1], torch.tensor([[0.0, 0.0, 3.0, 3.0]]))

    # no ground truth: everything sampled is negative
    labels, matched = _tiny_rpn().label_and_sample_anchors(anchors, [_instances((32, 32), [])])
    assert (labels[0] == 0).sum().item() == 16 and torch.equal(matched[0], torch.zeros(16, 4))

    # boundary threshold 0: anchors reaching outside the 32x32 image are ignored
    rpn_b = _tiny_rpn(anchor_boundary_thresh=0)
    labels, _ = rpn_b.label_and_sample_anchors(anchors, [_instances((32, 32), [[4, 4, 12, 12]])])
    # anchors inside [0, 32): cells i, j in {1, 2, 3} with x1 = 8j + 4 < 32 -> 9 anchors
    assert (labels[0] >= 0).sum().item() == 9


def test_rpn_training_requires_gt():
    rpn = _tiny_rpn().train()
    with pytest.raises(ValueError, match="gt_instances"):
        rpn(ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)]), {"p3": torch.zeros(1, 4, 4, 4)})
    with pytest.raises(KeyError, match="p3"):
        rpn(ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)]), {"p4": torch.zeros(1, 4, 4, 4)})


def test_find_top_rpn_proposals_hand_built():
    # two levels, one image 100x100
    lvl0 = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # score 5
            [1.0, 0.0, 11.0, 10.0],  # score 4, IoU with the first 9/11 > 0.7: suppressed
            [50.0, 50.0, 60.0, 60.0],  # score 3, dropped by pre-NMS top-2
            [-20.0, 0.0, 0.5, 10.0],  # score 6, clipped to width 0.5 < min size 1: dropped
        ]
    )[None]
    lvl1 = torch.tensor([[0.0, 0.0, 10.0, 10.0], [80.0, 80.0, 120.0, 130.0]])[None]
    logits = [torch.tensor([[5.0, 4.0, 3.0, 6.0]]), torch.tensor([[2.0, 1.0]])]
    (res,) = find_top_rpn_proposals(
        [lvl0, lvl1],
        logits,
        [(100, 100)],
        nms_thresh=0.7,
        pre_nms_topk=2,
        post_nms_topk=10,
        min_box_size=1.0,
        training=False,
    )
    # level 0 keeps its top 2 (scores 6, 5); the clipped box is too thin; level-1's box
    # identical to the level-0 one survives (NMS is per level); the last one is clipped.
    assert res.objectness_logits.tolist() == [5.0, 2.0, 1.0]
    assert res.proposal_boxes.tensor.tolist() == [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],
        [80.0, 80.0, 100.0, 100.0],
    ]
    (res,) = find_top_rpn_proposals(
        [lvl0, lvl1], logits, [(100, 100)], 0.7, 4, 2, 0.0, training=False
    )
    # pre-NMS top 4: the first two overlap (suppressed); post-NMS keeps the best 2 overall
    assert res.objectness_logits.tolist() == [6.0, 5.0]


def test_find_top_rpn_proposals_non_finite():
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, float("nan"), 5.0]]])
    logits = [torch.tensor([[1.0, 2.0]])]
    (res,) = find_top_rpn_proposals([boxes], logits, [(20, 20)], 0.7, 10, 10, 0.0, False)
    assert len(res) == 1 and res.objectness_logits.tolist() == [1.0]
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_rpn_proposals([boxes], logits, [(20, 20)], 0.7, 10, 10, 0.0, True)


def test_add_ground_truth_to_proposals():
    props = Instances((20, 20))
    props.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
    props.objectness_logits = torch.tensor([0.3])
    gt = _instances((20, 20), [[1, 1, 4, 4], [2, 2, 9, 9]])
    gt.gt_classes = torch.tensor([1, 2])
    (out,) = add_ground_truth_to_proposals([gt], [props])
    assert len(out) == 3
    assert out.proposal_boxes.tensor[1:].tolist() == [[1, 1, 4, 4], [2, 2, 9, 9]]
    expected_logit = math.log((1.0 - 1e-10) / 1e-10)
    assert torch.allclose(out.objectness_logits[1:], torch.full((2,), expected_logit))
    (out,) = add_ground_truth_to_proposals([gt.gt_boxes], [props])
    assert len(out) == 3
    with pytest.raises(ValueError, match="proposal lists"):
        add_ground_truth_to_proposals([gt, gt], [props])


def test_standard_rpn_head_shapes_names_and_init():
    head = StandardRPNHead(in_channels=8, num_anchors=3, conv_dims=(16, -1))
    assert set(head.state_dict()) == {
        "conv.conv0.weight",
        "conv.conv0.bias",
        "conv.conv1.weight",
        "conv.conv1.bias",
        "objectness_logits.weight",
        "objectness_logits.bias",
        "anchor_deltas.weight",
        "anchor_deltas.bias",
    }
    logits, deltas = head([torch.randn(2, 8, 5, 6), torch.randn(2, 8, 3, 3)])
    assert [t.shape for t in logits] == [(2, 3, 5, 6), (2, 3, 3, 3)]
    assert [t.shape for t in deltas] == [(2, 12, 5, 6), (2, 12, 3, 3)]
    big = StandardRPNHead(in_channels=256, num_anchors=15)
    assert abs(big.conv.weight.std().item() - 0.01) < 1e-3
    assert big.anchor_deltas.bias.abs().sum().item() == 0.0
    with pytest.raises(ValueError, match="greater than 0"):
        StandardRPNHead(in_channels=8, num_anchors=3, conv_dims=(16, 0))


def test_rpn_from_config_and_inference_topk():
    cfg = get_cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32]]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 20
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 7
    shapes = {"p2": ShapeSpec(channels=8, stride=4), "p3": ShapeSpec(channels=8, stride=8)}
    rpn = build_proposal_generator(cfg, shapes).eval()
    assert isinstance(rpn, RPN) and rpn.rpn_head.objectness_logits.out_channels == 3
    assert rpn.pre_nms_topk[False] == 20 and rpn.post_nms_topk[False] == 7
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 60), (50, 64)])
    feats = {"p2": torch.randn(2, 8, 16, 16), "p3": torch.randn(2, 8, 8, 8)}
    with torch.no_grad():
        proposals, losses = rpn(images, feats)
    assert losses == {}
    for p, (h, w) in zip(proposals, images.image_sizes):
        assert 0 < len(p) <= 7
        b = p.proposal_boxes.tensor
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert torch.all(p.objectness_logits[:-1] >= p.objectness_logits[1:])
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "PrecomputedProposals"
    assert build_proposal_generator(cfg, shapes) is None
    cfg.MODEL.RPN.IN_FEATURES = ["p9"]
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    with pytest.raises(KeyError, match="p9"):
        build_proposal_generator(cfg, shapes)


def test_rrpn_train_and_inference():
    rrpn = RRPN(
        in_features=["p3"],
        head=StandardRPNHead(in_channels=4, num_anchors=3, box_dim=5),
        anchor_generator=RotatedAnchorGenerator(
            sizes=[[8]], aspect_ratios=[[0.25]], strides=[8], angles=[[-60, 0, 60]], offset=0.5
        ),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=__import__(
            "torchdet.modeling.box_regression", fromlist=["Box2BoxTransformRotated"]
        ).Box2BoxTransformRotated(weights=(1.0, 1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=16,
        positive_fraction=0.5,
        pre_nms_topk=(50, 50),
        post_nms_topk=(10, 10),
    )
    for p in rrpn.rpn_head.parameters():
        torch.nn.init.zeros_(p)
    images = ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)])
    feats = {"p3": torch.randn(1, 4, 4, 4)}
    gt = Instances((32, 32))
    # exactly anchor (1, 1) at angle 0 (16 x 4); the +-60 degree ones overlap it little
    gt.gt_boxes = RotatedBoxes(torch.tensor([[12.0, 12.0, 16.0, 4.0, 0.0]]))
    rrpn.train()
    _, losses = rrpn(images, feats, [gt])
    assert losses["loss_rpn_loc"].item() == 0.0
    # all 48 anchors have zero logits; 16 are sampled -> 16 log 2 / 16
    assert math.isclose(losses["loss_rpn_cls"].item(), math.log(2), rel_tol=1e-5)
    rrpn.eval()
    with torch.no_grad():
        (props,), _ = rrpn(images, feats)
    assert isinstance(props.proposal_boxes, RotatedBoxes) and 0 < len(props) <= 10

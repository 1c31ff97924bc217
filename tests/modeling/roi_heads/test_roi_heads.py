"""RoI heads: proposal labelling / sampling, foreground and keypoint selection, the standard,
cascade and rotated heads on tiny features."""

from __future__ import annotations

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling.roi_heads import (
    CascadeROIHeads,
    RROIHeads,
    StandardROIHeads,
    build_roi_heads,
    select_foreground_proposals,
    select_proposals_with_visible_keypoints,
)
from torchdet.modeling.roi_heads.cascade_rcnn import _ScaleGradient
from torchdet.structures import BitMasks, Boxes, Instances, Keypoints, RotatedBoxes, pairwise_iou
from torchdet.utils.events import EventStorage

SHAPES = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in (2, 3, 4, 5)}


def _cfg(name="StandardROIHeads"):
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NAME = name
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 8
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 4
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 4
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 4
    return cfg


def _features(n=1, size=64):
    torch.manual_seed(0)
    return {k: torch.randn(n, 8, size // s.stride, size // s.stride) for k, s in SHAPES.items()}


def _targets() -> Instances:
    t = Instances((64, 64))
    t.gt_boxes = Boxes(torch.tensor([[4.0, 4, 20, 20], [30, 30, 60, 50]]))
    t.gt_classes = torch.tensor([0, 1])
    return t


def _proposals(boxes) -> Instances:
    p = Instances((64, 64))
    p.proposal_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
    p.objectness_logits = torch.zeros(len(boxes))
    return p


def test_label_and_sample_proposals():
    heads = build_roi_heads(_cfg(), SHAPES)
    heads.positive_fraction = 1.0
    # IoU with gt 0: 1.0 (same box), 0.56 and 0 (background).
    props = _proposals([[4, 4, 20, 20], [4, 4, 16, 16], [40, 0, 50, 10]])
    (out,) = heads.label_and_sample_proposals([props], [_targets()])
    # 3 proposals + 2 appended gt boxes, all sampled (batch of 8).
    assert len(out) == 5
    by_box = {
        tuple(b.tolist()): c.item() for b, c in zip(out.proposal_boxes.tensor, out.gt_classes)
    }
    assert by_box[(4.0, 4.0, 20.0, 20.0)] == 0
    assert by_box[(4.0, 4.0, 16.0, 16.0)] == 0
    assert by_box[(40.0, 0.0, 50.0, 10.0)] == 2  # background
    assert by_box[(30.0, 30.0, 60.0, 50.0)] == 1
    fg = out.gt_classes < 2
    assert torch.equal(
        out.gt_boxes.tensor[fg][:, :2] >= 4, torch.ones(int(fg.sum()), 2, dtype=torch.bool)
    )

    heads.proposal_append_gt = False
    empty = Instances((64, 64), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0).long())
    (out,) = heads.label_and_sample_proposals([props], [empty])
    assert out.gt_classes.tolist() == [2, 2, 2] and not out.has("gt_boxes")


def test_sampling_respects_positive_fraction():
    heads = build_roi_heads(_cfg(), SHAPES)
    heads.proposal_append_gt = False
    heads.batch_size_per_image = 4  # at most 1 foreground with POSITIVE_FRACTION 0.25
    props = _proposals([[4, 4, 20, 20]] * 5 + [[40, 0, 50, 10]] * 5)
    (out,) = heads.label_and_sample_proposals([props], [_targets()])
    assert (out.gt_classes == 0).sum() == 1 and (out.gt_classes == 2).sum() == 3


def test_select_foreground_and_visible_keypoints():
    p = _proposals([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    p.gt_classes = torch.tensor([1, 2, -1])
    (fg,), (mask,) = select_foreground_proposals([p], bg_label=2)
    assert mask.tolist() == [True, False, False] and len(fg) == 1
    p.gt_keypoints = Keypoints(
        torch.tensor([[[5.0, 5, 2]], [[5.0, 5, 0]], [[5.0, 5, 2]]])  # visible, invisible, outside
    )
    (kp,) = select_proposals_with_visible_keypoints([p])
    assert len(kp) == 1 and kp.gt_classes.tolist() == [1]
    with pytest.raises(KeyError, match="gt_classes"):
        select_foreground_proposals([_proposals([[0, 0, 1, 1]])], 2)


def test_standard_heads_inference_and_training():
    cfg = _cfg()
    cfg.MODEL.MASK_ON = True
    heads = build_roi_heads(cfg, SHAPES)
    assert isinstance(heads, StandardROIHeads) and heads.mask_on
    feats = _features()
    props = [_proposals([[4, 4, 20, 20], [30, 30, 60, 50], [0, 0, 64, 64]])]
    targets = _targets()
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 4:20, 4:20] = True
    masks[1, 30:50, 30:60] = True
    targets.gt_masks = BitMasks(masks)
    heads.train()
    with EventStorage(0):
        _, losses = heads(None, feats, props, [targets])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask"}
    with pytest.raises(ValueError, match="targets"):
        heads(None, feats, props, None)
    heads.eval()
    heads.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        (res,), _ = heads(None, feats, props)
        assert res.pred_masks.shape[1:] == (1, 8, 8)
        assert len(res) > 0
        (empty,), _ = heads(None, feats, [_proposals(torch.zeros(0, 4))])
    assert len(empty) == 0 and empty.pred_masks.shape == (0, 1, 8, 8)


def test_cascade_heads():
    cfg = _cfg("CascadeROIHeads")
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    heads = build_roi_heads(cfg, SHAPES)
    assert isinstance(heads, CascadeROIHeads) and heads.num_cascade_stages == 3
    names = {n for n, _ in heads.named_parameters()}
    assert {"box_head.2.fc1.weight", "box_predictor.0.cls_score.weight"} <= names
    assert [m.thresholds[1] for m in heads.proposal_matchers] == [0.5, 0.6, 0.7]
    feats = _features()
    props = [_proposals([[4, 4, 20, 20], [30, 30, 60, 50]])]
    heads.train()
    with EventStorage(0):
        _, losses = heads(None, feats, props, [_targets()])
    assert set(losses) == {f"{k}_stage{s}" for k in ("loss_cls", "loss_box_reg") for s in range(3)}
    heads.eval()
    with torch.no_grad():
        (res,), _ = heads(None, feats, props)
    assert res.pred_boxes.tensor.shape[1] == 4
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
    with pytest.raises(ValueError, match="CLS_AGNOSTIC_BBOX_REG"):
        build_roi_heads(cfg, SHAPES)


def test_scale_gradient():
    x = torch.ones(3, requires_grad=True)
    y = _ScaleGradient.apply(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert x.grad.tolist() == [0.25] * 3


def test_rotated_heads():
    cfg = _cfg("RROIHeads")
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignRotated"
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0, 1.0)
    heads = build_roi_heads(cfg, SHAPES)
    assert isinstance(heads, RROIHeads)
    assert heads.box_predictor.bbox_pred.out_features == 2 * 5
    feats = _features()
    props = Instances((64, 64))
    props.proposal_boxes = RotatedBoxes(torch.tensor([[12.0, 12, 16, 16, 0], [45, 40, 30, 20, 30]]))
    props.objectness_logits = torch.zeros(2)
    target = Instances((64, 64))
    target.gt_boxes = RotatedBoxes(torch.tensor([[12.0, 12, 16, 16, 0]]))
    target.gt_classes = torch.tensor([1])
    heads.train()
    with EventStorage(0):
        _, losses = heads(None, feats, [props], [target])
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    heads.eval()
    heads.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        (res,), _ = heads(None, feats, [props])
    assert isinstance(res.pred_boxes, RotatedBoxes) and res.pred_boxes.tensor.shape[1] == 5
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    with pytest.raises(ValueError, match="ROIAlignRotated"):
        build_roi_heads(cfg, SHAPES)


def test_fast_rcnn_inference_rotated_nms():
    from torchdet.modeling.roi_heads import fast_rcnn_inference_rotated

    boxes = torch.tensor([[10.0, 10, 8, 8, 0], [10.5, 10, 8, 8, 0], [40, 40, 8, 8, 45]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    (res,), (kept,) = fast_rcnn_inference_rotated([boxes], [scores], [(64, 64)], 0.5, 0.5, 10)
    assert kept.tolist() == [0, 2]
    assert res.pred_boxes.tensor[1].tolist() == [40, 40, 8, 8, 45]


def test_res5_heads_from_c4_config():
    from torchdet.model_zoo import get_config_file

    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml"))
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    heads = build_roi_heads(cfg, {"res4": ShapeSpec(channels=128, stride=16)})
    names = {n for n, _ in heads.named_parameters()}
    assert {"res5.0.shortcut.weight", "res5.2.conv3.weight", "mask_head.deconv.weight"} <= names
    assert heads.box_predictor.cls_score.in_features == 256
    feats = {"res4": torch.randn(1, 128, 4, 4)}
    heads.eval()
    heads.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        (res,), _ = heads(None, feats, [_proposals([[4, 4, 40, 40], [10, 10, 60, 60]])])
    assert res.pred_masks.shape[1:] == (1, 14, 14)


def test_heads_overfit_one_image():
    """Box and mask heads on fixed features and proposals learn one image: the losses go
    to ~0 and inference from the jittered proposals recovers the ground-truth boxes,
    classes and masks."""
    cfg = _cfg()
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.5
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    torch.manual_seed(0)
    heads = build_roi_heads(cfg, SHAPES)
    feats = _features()
    targets = _targets()
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 4:20, 4:12] = True  # left half of box 0
    masks[1, 30:50, 30:60] = True
    targets.gt_masks = BitMasks(masks)
    g = torch.Generator().manual_seed(1)

    def jittered(n: int) -> Instances:
        gt = targets.gt_boxes.tensor.repeat(n, 1)
        size = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
        boxes = gt + 0.1 * size * (2 * torch.rand(gt.shape, generator=g) - 1)
        background = torch.tensor([[40.0, 0, 60, 20], [0, 40, 20, 60]])
        return _proposals(torch.cat([boxes, background]))

    proposals = jittered(4)
    opt = torch.optim.Adam(heads.parameters(), lr=5e-3)
    heads.train()
    with EventStorage(0):
        for _ in range(100):
            _, losses = heads(None, feats, [proposals], [targets])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
    assert losses["loss_cls"] < 0.05 and losses["loss_box_reg"] < 0.1, losses
    assert losses["loss_mask"] < 0.3, losses

    heads.eval()
    with torch.no_grad():
        (res,), _ = heads(None, feats, [proposals])
    res = res[res.scores > 0.5]
    iou = pairwise_iou(targets.gt_boxes, res.pred_boxes)
    best = iou.argmax(dim=1)
    assert iou.max(dim=1).values.min() > 0.85
    assert res.pred_classes[best].tolist() == [0, 1]
    # The predicted RoI mask of box 0 is its left half.
    m = res.pred_masks[best[0], 0] > 0.5
    assert m[:, :3].float().mean() > 0.8 and m[:, -3:].float().mean() < 0.2

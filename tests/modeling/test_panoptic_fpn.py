"""Panoptic FPN: combining instances and semantic segmentation (hand-made maps), and the
model's inference contract."""

from __future__ import annotations

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.modeling import build_model
from torchdet.modeling.meta_arch.panoptic_fpn import combine_semantic_and_instance_outputs
from torchdet.structures import Boxes, Instances


def _instances(masks, scores, classes) -> Instances:
    inst = Instances(masks.shape[1:])
    inst.pred_masks = masks
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.tensor(classes)
    inst.pred_boxes = Boxes(torch.zeros(len(scores), 4))
    return inst


def test_combine_hand_made():
    H, W = 10, 10
    masks = torch.zeros(4, H, W, dtype=torch.bool)
    masks[0, 0:4, 0:4] = True  # 16 px, score 0.6
    masks[1, 0:4, 2:6] = True  # 16 px, score 0.9: placed first
    masks[2, 0:4, 1:5] = True  # 16 px, overlaps 12 px with the others: dropped (> 0.5)
    masks[3, 8:10, 8:10] = True  # score 0.3: below the threshold
    inst = _instances(masks, [0.6, 0.9, 0.8, 0.3], [0, 1, 2, 0])
    sem = torch.zeros(H, W, dtype=torch.long)
    sem[5:, :] = 1  # 50 px of stuff 1
    sem[9, 9] = 2  # 1 px of stuff 2: below the area threshold
    seg, info = combine_semantic_and_instance_outputs(inst, sem, 0.5, 3, 0.5)
    assert seg.dtype == torch.int32
    assert [s["id"] for s in info] == [1, 2, 3]
    assert info[0] == {
        "id": 1,
        "isthing": True,
        "score": pytest.approx(0.9),
        "category_id": 1,
        "instance_id": 1,
    }
    # Instance 0 overlaps instance 1 on 8 of its 16 px (exactly 0.5: kept), keeps the rest.
    assert info[1]["instance_id"] == 0 and info[1]["category_id"] == 0
    assert (seg == 1).sum() == 16 and (seg == 2).sum() == 8
    assert (seg[0:4, 0:2] == 2).all()
    assert info[2] == {"id": 3, "isthing": False, "category_id": 1, "area": 49}
    assert (seg == 3).sum() == 49 and seg[9, 9] == 0
    # Nothing at all: an all-void map.
    seg, info = combine_semantic_and_instance_outputs(
        _instances(torch.zeros(0, H, W, dtype=torch.bool), [], []),
        torch.zeros(H, W, dtype=torch.long),
        0.5,
        1,
        0.5,
    )
    assert info == [] and seg.abs().sum() == 0


def test_model_inference_contract():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PanopticFPN"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 3
    cfg.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 0.5
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    # As in Detectron2: the box predictor's weight dict from the config names only
    # loss_box_reg, so INSTANCE_LOSS_WEIGHT scales that one (and the mask loss).
    assert model.roi_heads.box_predictor.loss_weight == {"loss_box_reg": 0.5}
    assert model.roi_heads.mask_head.loss_weight == 0.5
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.zeros(3, 64, 96), "height": 32, "width": 48}])
    assert set(out) == {"sem_seg", "instances", "panoptic_seg"}
    assert out["sem_seg"].shape == (3, 32, 48)
    seg, info = out["panoptic_seg"]
    assert seg.shape == (32, 48) and seg.dtype == torch.int32
    assert {s["id"] for s in info} == set(seg.unique().tolist()) - {0}

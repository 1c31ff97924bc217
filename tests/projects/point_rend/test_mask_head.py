"""PointRendMaskHead: coarse head, subdivision schedule, inference output, training losses and
gradients of a whole PointRend R-CNN."""

from __future__ import annotations

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling import build_model
from torchdet.projects.point_rend import (
    ConvFCHead,
    PointRendMaskHead,
    add_pointrend_config,
    calculate_uncertainty,
)
from torchdet.structures import BitMasks, Boxes, Instances
from torchdet.utils.events import EventStorage


def _cfg():
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.merge_from_file(
        str(
            __import__("pathlib")
            .Path(__import__("torchdet.projects.point_rend", fromlist=["x"]).__file__)
            .parent
            / "configs/InstanceSegmentation/Base-PointRend-RCNN-FPN.yaml"
        )
    )
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.NUM_GROUPS = 1
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_MASK_HEAD.FC_DIM = 16
    cfg.MODEL.POINT_HEAD.FC_DIM = 16
    cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS = 32
    cfg.TEST.DETECTIONS_PER_IMAGE = 10  # an untrained model keeps the cap: bound the work
    return cfg


def test_calculate_uncertainty():
    logits = torch.tensor([[[1.0, -2.0]], [[3.0, -0.5]]]).view(2, 1, 2).expand(2, 1, 2)
    multi = torch.stack([logits[:, 0], -logits[:, 0] * 2], dim=1)  # (2, 2, 2)
    torch.testing.assert_close(
        calculate_uncertainty(multi, torch.tensor([0, 1])),
        torch.tensor([[[-1.0, -2.0]], [[-6.0, -1.0]]]),
    )
    torch.testing.assert_close(calculate_uncertainty(logits, torch.tensor([5, 5])), -logits.abs())


def test_conv_fc_head_shapes_and_channel_reduction():
    head = ConvFCHead(
        ShapeSpec(channels=16, height=14, width=14),
        conv_dim=8,
        fc_dims=[32, 32],
        output_shape=(3, 7, 7),
    )
    assert hasattr(head, "reduce_channel_dim_conv")
    assert head.fc1.in_features == 8 * 7 * 7
    assert head(torch.randn(5, 16, 14, 14)).shape == (5, 3, 7, 7)
    # Input no wider than conv_dim: no 1x1 reduction (as the reference checkpoints).
    narrow = ConvFCHead(
        ShapeSpec(channels=8, height=14, width=14), conv_dim=8, fc_dims=[32], output_shape=(1, 7, 7)
    )
    assert not hasattr(narrow, "reduce_channel_dim_conv")
    assert narrow(torch.randn(0, 8, 14, 14)).shape == (0, 1, 7, 7)
    with pytest.raises(ValueError, match="fc_dims"):
        ConvFCHead(
            ShapeSpec(channels=8, height=14, width=14),
            conv_dim=8,
            fc_dims=[],
            output_shape=(1, 7, 7),
        )


def test_version1_checkpoint_names_load():
    head = ConvFCHead(
        ShapeSpec(channels=8, height=4, width=4), conv_dim=8, fc_dims=[4], output_shape=(1, 2, 2)
    )
    sd = head.state_dict()
    for k in list(sd):
        sd[k.replace("fc1", "coarse_mask_fc1")] = torch.full_like(sd.pop(k), 0.5)
    sd._metadata[""]["version"] = 1
    head.load_state_dict(sd)
    assert (head.fc1.weight == 0.5).all()


def _features_shapes():
    return {"p2": ShapeSpec(channels=16, stride=4), "p3": ShapeSpec(channels=16, stride=8)}


def test_subdivision_schedule_skips_full_steps():
    cfg = _cfg()
    head = PointRendMaskHead(cfg, _features_shapes())
    # 7 -> 14 -> 28 are full re-predictions of 784 points: start at 28 with 5 - 2 = 3 steps.
    assert head.mask_point_subdivision_init_resolution == 28
    assert head.mask_point_subdivision_steps == 3
    head.eval()
    features = {"p2": torch.randn(2, 16, 16, 16), "p3": torch.randn(2, 16, 8, 8)}
    a = Instances((64, 64))
    a.pred_boxes = Boxes(torch.tensor([[2.0, 3.0, 40.0, 50.0], [10.0, 10.0, 20.0, 30.0]]))
    a.pred_classes = torch.tensor([0, 2])
    b = Instances((64, 64))
    b.pred_boxes = Boxes(torch.zeros(0, 4))
    b.pred_classes = torch.zeros(0, dtype=torch.long)
    with torch.no_grad():
        out = head(features, [a, b])
    assert out[0].pred_masks.shape == (2, 1, 224, 224)
    assert out[1].pred_masks.shape == (0, 1, 224, 224)
    # No detection in the batch: the masks stop at the initial grid.
    with torch.no_grad():
        (empty,) = head({k: v[:1] for k, v in features.items()}, [b])
    assert empty.pred_masks.shape == (0, 1, 28, 28)
    assert ((out[0].pred_masks >= 0) & (out[0].pred_masks <= 1)).all()


def test_bad_config():
    cfg = _cfg()
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 4
    with pytest.raises(ValueError, match="POINT_HEAD.NUM_CLASSES"):
        PointRendMaskHead(cfg, _features_shapes())
    cfg = _cfg()
    cfg.MODEL.POINT_HEAD.IN_FEATURES = ["p7"]
    with pytest.raises(KeyError, match="p7"):
        PointRendMaskHead(cfg, _features_shapes())
    with pytest.raises(TypeError, match="POOLER_TYPE"):
        PointRendMaskHead(_cfg(), ShapeSpec(channels=16))


def _image_with_boxes(h, w, boxes, classes):
    image = torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes = torch.tensor(classes)
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, int(y0) : int(y1), int(x0) : int(x1)] = True
    inst.gt_masks = BitMasks(masks)
    return {"image": image, "instances": inst}


def test_pointrend_rcnn_trains_and_infers():
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model(cfg)
    model.train()
    batch = [
        _image_with_boxes(96, 128, [[10, 10, 60, 70], [70, 20, 120, 90]], [0, 2]),
        _image_with_boxes(128, 96, [[5, 30, 80, 100]], [1]),
    ]
    with EventStorage():
        losses = model(batch)
    assert {"loss_mask", "loss_mask_point"} <= set(losses)
    for name, value in losses.items():
        assert torch.isfinite(value), name
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert model.roi_heads.mask_head.point_head.predictor.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 48, "width": 64}])
    inst = out[0]["instances"]
    assert inst.image_size == (48, 64)
    assert inst.pred_masks.shape == (len(inst), 48, 64)
    assert inst.pred_masks.dtype == torch.bool


def test_implicit_pointrend_rcnn_trains_and_infers():
    torch.manual_seed(0)
    cfg = _cfg()
    cfg.MODEL.ROI_MASK_HEAD.NAME = "ImplicitPointRendMaskHead"
    cfg.MODEL.POINT_HEAD.NAME = "ImplicitPointHead"
    cfg.MODEL.POINT_HEAD.NUM_FC = 2
    cfg.MODEL.POINT_HEAD.FC_DIM = 8
    cfg.MODEL.POINT_HEAD.SUBDIVISION_STEPS = 1
    cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS = 196
    model = build_model(cfg)
    head = model.roi_heads.mask_head
    assert head.mask_point_subdivision_init_resolution == 14
    assert head.parameter_head.output_shape == (head.point_head.num_params,)
    model.train()
    batch = [_image_with_boxes(96, 128, [[10, 10, 60, 70]], [1])]
    with EventStorage():
        losses = model(batch)
    assert {"loss_l2", "loss_mask_point"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert head.parameter_head.prediction.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": batch[0]["image"]}])
    assert out["instances"].pred_masks.shape[1:] == (96, 128)
    cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS = 200
    with pytest.raises(ValueError, match="square"):
        build_model(cfg)

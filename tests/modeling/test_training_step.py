"""One training step of every meta-architecture on two shapes images (narrow models): the
expected loss names, finite values, and a gradient on every trainable parameter. Plus an
overfit test: a tiny Faster R-CNN learns one image's boxes."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.data import DatasetCatalog, DatasetMapper
from torchdet.data.datasets.synthetic import register_shapes
from torchdet.model_zoo import get_config_file
from torchdet.modeling import build_model
from torchdet.utils.events import EventStorage

RPN_LOSSES = {"loss_rpn_cls", "loss_rpn_loc"}
BOX_LOSSES = {"loss_cls", "loss_box_reg"}


def _cfg(config: str, **overrides):
    """A zoo config narrowed to a few-MB model (the widths of the parity models or less)."""
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 600
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 200
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.CONV_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 2
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.INPUT.MIN_SIZE_TRAIN = (224,)
    cfg.INPUT.MAX_SIZE_TRAIN = 320
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.DATASETS.TRAIN = ("shapes_val",)
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, leaf, value)
    return cfg


def _batch(cfg, shapes_dir, dataset: str, n: int = 2) -> list[dict]:
    register_shapes(shapes_dir)
    dicts = [d for d in DatasetCatalog.get(dataset) if len(d.get("annotations", [1]))][:n]
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(d) for d in dicts]


def _train_step(cfg, batch) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    with EventStorage(0):
        losses = model(batch)
    total = sum(losses.values())
    total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None]
    assert no_grad == [], f"no gradient reached {no_grad}"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert bad == [], f"non-finite gradients in {bad}"
    for k, v in losses.items():
        assert v.dim() == 0 and math.isfinite(v.item()), (k, v)
    return losses


CASES = {
    "faster_rcnn_fpn": ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", {}, RPN_LOSSES | BOX_LOSSES),
    "mask_rcnn_fpn": (
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
        {},
        RPN_LOSSES | BOX_LOSSES | {"loss_mask"},
    ),
    "mask_rcnn_c4": (
        "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.yaml",
        {"MODEL.RPN.POST_NMS_TOPK_TRAIN": 100},
        RPN_LOSSES | BOX_LOSSES | {"loss_mask"},
    ),
    "mask_rcnn_dc5": (
        "COCO-InstanceSegmentation/mask_rcnn_R_50_DC5_1x.yaml",
        {},
        RPN_LOSSES | BOX_LOSSES | {"loss_mask"},
    ),
    "cascade_mask_rcnn": (
        "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
        {},
        RPN_LOSSES | {f"{k}_stage{s}" for k in BOX_LOSSES for s in range(3)} | {"loss_mask"},
    ),
    "mask_rcnn_gn_sigmoid_giou": (
        "Misc/mask_rcnn_R_50_FPN_3x_gn.yaml",
        {
            "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": True,
            "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": "giou",
            "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": True,
            "MODEL.RESNETS.NORM": "FrozenBN",
            "MODEL.FPN.NORM": "",
        },
        RPN_LOSSES | BOX_LOSSES | {"loss_mask"},
    ),
    "retinanet": ("COCO-Detection/retinanet_R_50_FPN_1x.yaml", {}, BOX_LOSSES),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_step(shapes_dir, case):
    config, overrides, expected = CASES[case]
    cfg = _cfg(config, **overrides)
    losses = _train_step(cfg, _batch(cfg, shapes_dir, "shapes_val"))
    assert set(losses) == expected


def test_training_step_keypoint_rcnn(shapes_dir):
    cfg = _cfg(
        "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
        **{
            "MODEL.ROI_HEADS.NUM_CLASSES": 1,
            "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS": 3,
            "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": [32, 32],
            "DATASETS.TRAIN": ("shapes_kpt_val",),
        },
    )
    losses = _train_step(cfg, _batch(cfg, shapes_dir, "shapes_kpt_val"))
    assert set(losses) == RPN_LOSSES | BOX_LOSSES | {"loss_keypoint"}
    assert losses["loss_keypoint"] > 0


def test_training_step_semantic_segmentor(shapes_dir):
    cfg = _cfg(
        "Misc/semantic_R_50_FPN_1x.yaml",
        **{"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 5, "DATASETS.TRAIN": ("shapes_sem_val",)},
    )
    losses = _train_step(cfg, _batch(cfg, shapes_dir, "shapes_sem_val"))
    assert set(losses) == {"loss_sem_seg"}
    assert losses["loss_sem_seg"].item() > 0


def test_training_step_panoptic_fpn(shapes_dir):
    cfg = _cfg(
        "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml",
        **{"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 3, "DATASETS.TRAIN": ("shapes_pan_val_separated",)},
    )
    losses = _train_step(cfg, _batch(cfg, shapes_dir, "shapes_pan_val_separated"))
    assert set(losses) == RPN_LOSSES | BOX_LOSSES | {"loss_mask", "loss_sem_seg"}


def test_training_step_fcos(shapes_dir):
    from torchdet.modeling import FCOS
    from torchdet.modeling.backbone import build_backbone
    from torchdet.modeling.meta_arch.fcos import FCOSHead

    cfg = _cfg("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    in_features = ["p3", "p4", "p5", "p6", "p7"]
    head = FCOSHead(input_shape=[shapes[f] for f in in_features], conv_dims=[32, 32], num_classes=3)
    model = FCOS(
        backbone=backbone,
        head=head,
        head_in_features=in_features,
        num_classes=3,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )
    batch = _batch(cfg, shapes_dir, "shapes_val")
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    assert all(math.isfinite(v.item()) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "height": 100, "width": 120}])
    assert out[0]["instances"].image_size == (100, 120)

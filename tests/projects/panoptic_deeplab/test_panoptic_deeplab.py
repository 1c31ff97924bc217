"""Panoptic-DeepLab: targets on a hand-built id map, and one training step / inference of a
tiny model fed by ``PanopticDeeplabDatasetMapper`` from the shapes panoptic split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from torchdet.config import get_cfg
from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets import register_coco_panoptic
from torchdet.modeling import build_model
from torchdet.projects.panoptic_deeplab import (
    PanopticDeeplabDatasetMapper,
    PanopticDeepLabTargetGenerator,
    add_panoptic_deeplab_config,
)


def test_target_generator_hand_computed():
    pan = np.zeros((6, 8), dtype=np.int64)
    pan[:, :4] = 5  # stuff (class 3)
    pan[1:3, 5:7] = 7  # thing (class 0), 4 pixels, centre (1.5, 5.5)
    pan[5, 7] = 9  # crowd thing (class 1)
    segments = [
        {"id": 5, "category_id": 3, "iscrowd": 0},
        {"id": 7, "category_id": 0, "iscrowd": 0},
        {"id": 9, "category_id": 1, "iscrowd": 1},
    ]
    gen = PanopticDeepLabTargetGenerator(
        ignore_label=255,
        thing_ids=[0, 1],
        sigma=1,
        ignore_stuff_in_offset=True,
        small_instance_area=5,
        small_instance_weight=3,
    )
    t = gen(pan, segments)
    assert t["sem_seg"][0, 0] == 3 and t["sem_seg"][1, 5] == 0 and t["sem_seg"][0, 7] == 255
    assert t["sem_seg"][5, 7] == 1  # crowd keeps its semantic label by default
    assert t["center_points"] == [[1.5, 5.5], [5.0, 7.0]]
    # Gaussian peak (value 1) at the rounded centre (2, 6): round(1.5) = 2, round(5.5) = 6.
    assert t["center"][2, 6] == pytest.approx(1.0)
    assert t["center"][2, 5] == pytest.approx(np.exp(-0.5))
    assert t["offset"][:, 1, 5].tolist() == [0.5, 0.5]
    assert t["offset"][:, 2, 6].tolist() == [-0.5, -0.5]
    assert t["sem_seg_weights"][1, 5] == 3 and t["sem_seg_weights"][0, 0] == 1
    assert t["center_weights"].shape == (1, 6, 8)
    assert t["center_weights"][0, 0, 0] == 1 and t["center_weights"][0, 5, 7] == 0  # crowd
    assert t["offset_weights"][0, 0, 0] == 0 and t["offset_weights"][0, 1, 5] == 1  # stuff off
    with pytest.raises(ValueError, match="id map"):
        gen(pan[None], segments)


_META = {
    "thing_classes": ["circle", "square", "triangle"],
    "stuff_classes": ["circle", "square", "triangle", "sky", "ground"],
    "thing_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2},
    "stuff_dataset_id_to_contiguous_id": {1: 0, 2: 1, 3: 2, 4: 3, 5: 4},
}


def _tiny_cfg(train_name: str):
    cfg = get_cfg()
    add_panoptic_deeplab_config(cfg)
    cfg.DATASETS.TRAIN = (train_name,)
    cfg.MODEL.META_ARCHITECTURE = "PanopticDeepLab"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_deeplab_backbone"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TRAIN = (128,)
    cfg.INPUT.MAX_SIZE_TRAIN = 192
    cfg.INPUT.GAUSSIAN_SIGMA = 4
    r = cfg.MODEL.RESNETS
    r.NORM = "BN"
    r.STEM_OUT_CHANNELS = 16
    r.RES2_OUT_CHANNELS = 32
    r.WIDTH_PER_GROUP = 8
    r.OUT_FEATURES = ["res2", "res3", "res5"]
    r.RES5_DILATION = 2
    for head in (cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.INS_EMBED_HEAD):
        head.IN_FEATURES = ["res2", "res3", "res5"]
        head.PROJECT_FEATURES = ["res2", "res3"]
        head.PROJECT_CHANNELS = [8, 16]
        head.ASPP_CHANNELS = 16
        head.CONVS_DIM = 16
        head.HEAD_CHANNELS = 8
        head.NORM = "BN"
    cfg.MODEL.SEM_SEG_HEAD.NAME = "PanopticDeepLabSemSegHead"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = True
    cfg.MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV = True
    cfg.MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY = 32
    cfg.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA = 16
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_train_step_and_inference(shapes_dir: Path):
    name = "shapes_pdl_train_test_panoptic_deeplab"
    if name not in DatasetCatalog.list():
        root = shapes_dir / "train"
        register_coco_panoptic(
            name,
            dict(_META),
            str(root / "images"),
            str(root / "panoptic"),
            str(root / "panoptic.json"),
            str(root / "instances.json"),
        )
    assert MetadataCatalog.get(name).label_divisor == 1000
    torch.manual_seed(0)
    cfg = _tiny_cfg(name)
    mapper = PanopticDeeplabDatasetMapper(cfg)
    batch = [mapper(d) for d in DatasetCatalog.get(name)[:2]]
    assert batch[0]["offset"].shape[0] == 2 and batch[0]["center_weights"].dim() == 3
    assert min(batch[0]["image"].shape[1:]) == 128
    model = build_model(cfg)
    model.train()
    losses = model(batch)
    assert set(losses) == {"loss_sem_seg", "loss_center", "loss_offset"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []

    model.eval()
    with torch.no_grad():
        # Make centres certain so that the thing branch is exercised.
        model.ins_embed_head.center_predictor.bias.fill_(1.0)
        out = model([{"image": batch[0]["image"], "height": 100, "width": 120}])
    panoptic, segments = out[0]["panoptic_seg"]
    assert segments is None and panoptic.shape == (100, 120)
    assert out[0]["sem_seg"].shape == (5, 100, 120)
    labels = set(torch.unique(panoptic).tolist())
    assert labels <= {-1} | {c * 1000 + k for c in range(5) for k in range(0, 200)}
    if "instances" in out[0]:
        inst = out[0]["instances"]
        assert inst.image_size == (100, 120)
        assert inst.pred_classes.max() <= 2 and inst.pred_masks.shape[1:] == (100, 120)
        assert len(inst.pred_boxes) == len(inst)


def test_missing_metadata_raises():
    cfg = _tiny_cfg("no_such_dataset_for_panoptic_deeplab")
    with pytest.raises(KeyError, match="thing_dataset_id_to_contiguous_id"):
        build_model(cfg)

"""Test-time augmentation: the augmented copies and their transforms, and the TTA model
(a single unflipped copy at the input size reproduces the plain model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdet.config import get_cfg
from torchdet.data.transforms import HFlipTransform
from torchdet.model_zoo import get_config_file
from torchdet.modeling import build_model
from torchdet.modeling.test_time_augmentation import DatasetMapperTTA, GeneralizedRCNNWithTTA


def test_mapper_sizes_flips_and_transforms():
    mapper = DatasetMapperTTA(min_sizes=[20, 40], max_size=100, flip=True)
    image = torch.arange(3 * 10 * 16, dtype=torch.uint8).view(3, 10, 16)
    # The given image is a 2x downscale of a 20 x 32 original.
    out = mapper({"image": image, "height": 20, "width": 32, "file_name": "x.jpg"})
    assert [tuple(o["image"].shape) for o in out] == [
        (3, 20, 32),
        (3, 20, 32),
        (3, 40, 64),
        (3, 40, 64),
    ]
    assert [
        any(isinstance(t, HFlipTransform) for t in o["transforms"].transforms) for o in out
    ] == [
        False,
        True,
        False,
        True,
    ]
    assert all(o["file_name"] == "x.jpg" for o in out)
    # Transforms start at the original image: a box of the original maps to the copy.
    box = np.array([[0.0, 0.0, 8.0, 4.0]])
    assert out[2]["transforms"].apply_box(box).tolist() == [[0, 0, 16, 8]]
    assert out[3]["transforms"].apply_box(box).tolist() == [[48, 0, 64, 8]]
    with pytest.raises(KeyError, match="height"):
        mapper({"image": image})


def _tiny_mask_rcnn_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    return cfg


def test_single_copy_reproduces_the_model():
    cfg = _tiny_mask_rcnn_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)
    inputs = [{"image": image, "height": 64, "width": 96}]
    tta = GeneralizedRCNNWithTTA(cfg, model, DatasetMapperTTA([64], 1000, False))
    with torch.no_grad():
        (plain,) = model(inputs)
        (aug,) = tta(inputs)
    plain, aug = plain["instances"], aug["instances"]
    assert len(plain) > 0
    assert torch.allclose(aug.pred_boxes.tensor, plain.pred_boxes.tensor, atol=1e-4)
    assert torch.equal(aug.pred_classes, plain.pred_classes)
    assert torch.allclose(aug.scores, plain.scores)
    assert torch.equal(aug.pred_masks, plain.pred_masks)
    assert model.roi_heads.mask_on  # restored after the box pass


def test_multi_scale_flip_outputs_and_errors():
    cfg = _tiny_mask_rcnn_cfg()
    model = build_model(cfg).eval()
    tta = GeneralizedRCNNWithTTA(cfg, model, DatasetMapperTTA([48, 80], 1000, True), batch_size=3)
    image = torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = tta([{"image": image, "height": 32, "width": 48}])
    inst = out["instances"]
    assert inst.image_size == (32, 48)
    assert len(inst) <= 20
    assert inst.pred_masks.shape[1:] == (32, 48) and inst.pred_masks.dtype == torch.bool
    cfg.MODEL.KEYPOINT_ON = True
    with pytest.raises(ValueError, match="keypoints"):
        GeneralizedRCNNWithTTA(cfg, model)
    with pytest.raises(TypeError, match="GeneralizedRCNN"):
        GeneralizedRCNNWithTTA(_tiny_mask_rcnn_cfg(), torch.nn.Linear(1, 1))

"""Acceptance: the reference's narrow PointRend R-CNN (fixed, perturbed weights) gives the
reference's detections and masks on the first 4 shapes val images (README matching rule)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import get_cfg
from torchdet.modeling import build_model
from torchdet.projects.point_rend import add_pointrend_config

pytestmark = pytest.mark.slow

_PARITY_UTILS = Path(__file__).resolve().parents[2] / "modeling" / "parity_utils.py"


def _load_parity_utils():
    name = "torchdet_tests_parity_utils"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PARITY_UTILS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_pointrend_rcnn_R50_FPN(parity_dir, shapes_dir):
    pu = _load_parity_utils()
    model_dir = parity_dir / "projects" / "pointrend_rcnn_R50_FPN"
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no PointRend reference under {model_dir}")
    torch.set_num_threads(2)
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(
        checkpointer._load_file(str(model_dir / "model_final.pth"))
    )
    assert incompatible.missing_keys == []
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    model.eval()

    images, contiguous_to_dataset = pu.load_images(shapes_dir / "val")
    images = images[:4]
    outputs = pu.run_model(model, pu.model_inputs(cfg, images), batch_size=1)
    ours = []
    for image, output in zip(images, outputs):
        instances = output["instances"]
        assert instances.image_size == (image["height"], image["width"])
        assert instances.pred_masks.shape[1:] == (image["height"], image["width"])
        ours += pu.instances_to_coco(instances, image["id"], contiguous_to_dataset)
    reference = pu.load_reference(model_dir / "coco_instances_val.json")
    report = pu.match_results(reference, ours)
    print("\n" + report.summary("pointrend_rcnn_R50_FPN"))
    assert report.num_reference >= 40
    assert report.match_rate >= 0.97, report.summary("pointrend_rcnn_R50_FPN")
    assert len(report.mask_ious) == report.num_matched
    assert report.mean_mask_iou >= 0.95, report.summary("pointrend_rcnn_R50_FPN")

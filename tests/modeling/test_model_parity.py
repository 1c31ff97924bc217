"""Acceptance: the 8 small reference models give the reference's outputs on the 60 shapes
val images (matching rule of ``shared/parity/README.md``).

Each model is built from its ``config.yaml``, loads ``model_final.pth`` with no missing or
unexpected key, and runs image by image (batch 1, as the reference evaluator did: padding a
batch to its largest image changes the features near the border) through the test-time
resize of ``DatasetMapper(cfg, is_train=False)``. Run with ``-s`` to see the match counts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import get_cfg
from torchdet.modeling import build_model


def _load_parity_utils():
    name = "torchdet_tests_parity_utils"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("parity_utils.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules[name]


pu = _load_parity_utils()

pytestmark = pytest.mark.slow


def _build(parity_dir: Path, name: str):
    model_dir = parity_dir / "models" / name
    if not (model_dir / "model_final.pth").is_file():
        pytest.skip(f"no reference model {name} under {parity_dir / 'models'}")
    torch.set_num_threads(2)
    cfg = get_cfg()
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(
        checkpointer._load_file(str(model_dir / "model_final.pth"))
    )
    assert incompatible.missing_keys == [], incompatible.missing_keys
    assert incompatible.unexpected_keys == [], incompatible.unexpected_keys
    assert incompatible.incorrect_shapes == [], incompatible.incorrect_shapes
    model.eval()
    return cfg, model, model_dir


def _check_instances(parity_dir, shapes_dir, name, json_name="instances.json"):
    cfg, model, model_dir = _build(parity_dir, name)
    images, contiguous_to_dataset = pu.load_images(shapes_dir / "val", json_name)
    assert len(images) == 60
    outputs = pu.run_model(model, pu.model_inputs(cfg, images), batch_size=1)
    ours = []
    for image, output in zip(images, outputs):
        instances = output["instances"]
        assert instances.image_size == (image["height"], image["width"])
        ours += pu.instances_to_coco(instances, image["id"], contiguous_to_dataset)
    (eval_dir,) = [d for d in model_dir.iterdir() if d.name.startswith("eval_")]
    reference = pu.load_reference(eval_dir / "coco_instances_results.json")
    report = pu.match_results(reference, ours)
    print("\n" + report.summary(name))
    assert report.num_reference > 100
    assert report.match_rate >= 0.97, report.summary(name)
    return report, outputs


def test_faster_rcnn_R50_FPN(parity_dir, shapes_dir):
    _check_instances(parity_dir, shapes_dir, "faster_rcnn_R50_FPN")


def test_mask_rcnn_R50_FPN(parity_dir, shapes_dir):
    report, _ = _check_instances(parity_dir, shapes_dir, "mask_rcnn_R50_FPN")
    assert len(report.mask_ious) == report.num_matched
    assert report.mean_mask_iou >= 0.95, report.summary("mask_rcnn_R50_FPN")


def test_mask_rcnn_R50_C4(parity_dir, shapes_dir):
    report, _ = _check_instances(parity_dir, shapes_dir, "mask_rcnn_R50_C4")
    assert len(report.mask_ious) == report.num_matched
    assert report.mean_mask_iou >= 0.95, report.summary("mask_rcnn_R50_C4")


def test_mask_rcnn_R50_DC5(parity_dir, shapes_dir):
    report, _ = _check_instances(parity_dir, shapes_dir, "mask_rcnn_R50_DC5")
    assert report.mean_mask_iou >= 0.95, report.summary("mask_rcnn_R50_DC5")


def test_cascade_mask_rcnn_R50_FPN(parity_dir, shapes_dir):
    report, _ = _check_instances(parity_dir, shapes_dir, "cascade_mask_rcnn_R50_FPN")
    assert report.mean_mask_iou >= 0.95, report.summary("cascade_mask_rcnn_R50_FPN")


def test_keypoint_rcnn_R50_FPN(parity_dir, shapes_dir):
    report, outputs = _check_instances(
        parity_dir, shapes_dir, "keypoint_rcnn_R50_FPN", json_name="keypoints.json"
    )
    assert len(report.keypoints_close) == 3 * report.num_matched
    assert report.keypoint_rate >= 0.97, report.summary("keypoint_rcnn_R50_FPN")
    instances = next(o["instances"] for o in outputs if len(o["instances"]))
    assert instances.pred_keypoints.shape[1:] == (3, 3)
    assert instances.pred_keypoint_heatmaps.shape[1:] == (3, 56, 56)

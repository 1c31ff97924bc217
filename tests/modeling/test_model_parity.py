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


def test_retinanet_R50_FPN(parity_dir, shapes_dir):
    _check_instances(parity_dir, shapes_dir, "retinanet_R50_FPN")


def test_panoptic_fpn_R50(parity_dir, shapes_dir):
    import json

    import numpy as np

    name = "panoptic_fpn_R50"
    report, outputs = _check_instances(parity_dir, shapes_dir, name)
    assert report.mean_mask_iou >= 0.95, report.summary(name)
    eval_dir = parity_dir / "models" / name / "eval_shapes_pan_val_separated"
    ref_panoptic = np.load(eval_dir / "panoptic_seg.npz")
    ref_segments = json.loads((eval_dir / "panoptic_segments.json").read_text())
    ref_sem_seg = pu.sem_seg_argmax_from_predictions(
        json.loads((eval_dir / "sem_seg_predictions.json").read_text()),
        # the README's stuff_dataset_id_to_contiguous_id of shapes_pan_<split>_separated
        {0: 0, 4: 1, 5: 2},
    )
    images, _ = pu.load_images(shapes_dir / "val")
    pan_equal = pan_total = sem_equal = sem_total = 0
    same_segments = 0
    for image, output in zip(images, outputs):
        stem = Path(image["file_name"]).stem
        panoptic_seg, segments_info = output["panoptic_seg"]
        assert panoptic_seg.dtype == torch.int32
        ours = panoptic_seg.numpy()
        ref = ref_panoptic[stem]
        assert ours.shape == ref.shape == (image["height"], image["width"])
        pan_equal += int((ours == ref).sum())
        pan_total += ref.size
        sem = output["sem_seg"]
        assert sem.shape == (3, image["height"], image["width"])
        sem_ref = ref_sem_seg[stem]
        sem_equal += int((sem.argmax(dim=0).numpy() == sem_ref).sum())
        sem_total += sem_ref.size
        strip = [{k: v for k, v in s.items() if k != "score"} for s in segments_info]
        ref_strip = [{k: v for k, v in s.items() if k != "score"} for s in ref_segments[stem]]
        same_segments += strip == ref_strip
    print(
        f"{name}: panoptic pixels equal {100 * pan_equal / pan_total:.3f}%, sem_seg argmax "
        f"pixels equal {100 * sem_equal / sem_total:.3f}%, segments_info identical on "
        f"{same_segments}/{len(images)} images"
    )
    assert pan_equal / pan_total >= 0.995
    assert sem_equal / sem_total >= 0.995
    assert same_segments >= 0.95 * len(images)

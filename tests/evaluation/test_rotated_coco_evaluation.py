"""RotatedCOCOEvaluator: rotated-box IoU in COCO AP."""

from __future__ import annotations

import json
import uuid

import pytest
import torch

from torchdet.data.datasets import register_coco_instances
from torchdet.evaluation import RotatedCOCOEvaluator
from torchdet.structures import Instances, RotatedBoxes


def _dataset(tmp_path) -> str:
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "height": 200, "width": 200}],
        "categories": [{"id": 1, "name": "r"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 40.0, 20.0, 30.0],
             "area": 800.0, "iscrowd": 0},
        ],
    }  # fmt: skip
    path = tmp_path / "rot.json"
    path.write_text(json.dumps(data))
    name = f"evaltest_rot_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(path), str(tmp_path))
    return name


def _run(name, box) -> dict:
    ev = RotatedCOCOEvaluator(name, distributed=False)
    inst = Instances((200, 200))
    inst.pred_boxes = RotatedBoxes(torch.tensor([box]))
    inst.scores = torch.tensor([0.9])
    inst.pred_classes = torch.tensor([0])
    ev.process([{"image_id": 1}], [{"instances": inst}])
    return ev.evaluate()["bbox"]


def test_rotated_perfect_and_perpendicular(tmp_path):
    name = _dataset(tmp_path)
    assert _run(name, [100.0, 100.0, 40.0, 20.0, 30.0])["AP"] == pytest.approx(100.0)
    # the same rectangle turned by 180 degrees is the same region
    assert _run(name, [100.0, 100.0, 40.0, 20.0, -150.0])["AP"] == pytest.approx(100.0)
    # turned by 90 degrees: IoU = 400 / (800 + 800 - 400) = 1/3 < 0.5
    assert _run(name, [100.0, 100.0, 40.0, 20.0, 120.0])["AP"] == pytest.approx(0.0)


def test_rotated_results_validation(tmp_path):
    name = _dataset(tmp_path)
    ev = RotatedCOCOEvaluator(name, distributed=False)
    rec = {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1.0, 2.0, 3.0]}
    with pytest.raises(ValueError, match="record 0 .*4 or 5 numbers"):
        ev.evaluate_results([rec])
    rec["bbox"] = [100.0, 100.0, 40.0, 20.0, float("nan")]
    with pytest.raises(ValueError, match="non-finite bbox"):
        ev.evaluate_results([rec])

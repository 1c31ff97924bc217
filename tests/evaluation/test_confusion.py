"""Per-class precision/recall table, detection confusion matrix and its plot."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from PIL import Image

from torchdet.data.datasets import register_coco_instances
from torchdet.evaluation import (
    COCOEvaluator,
    confusion_matrix_from_evaluator,
    plot_confusion_matrix,
    precision_recall_table,
)


@pytest.fixture
def evaluated(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400,
             "iscrowd": 0},
        ],
    }  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    name = f"evaltest_conf_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(path), str(tmp_path))
    dets = [
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.9},  # wrong class
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.8},  # right
        {"image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "score": 0.7},  # background
        {"image_id": 1, "category_id": 1, "bbox": [80, 80, 10, 10], "score": 0.1},  # low score
    ]
    ev = COCOEvaluator(name, distributed=False)
    ev.evaluate_results(dets)
    return ev


def test_precision_recall_table(evaluated):
    rows = precision_recall_table(evaluated.coco_evals["bbox"])
    assert [(r["name"], r["gt"], r["tp"], r["fp"]) for r in rows] == [
        ("one", 1, 0, 2),
        ("two", 1, 1, 1),
    ]
    assert rows[0]["recall"] == 0.0 and rows[0]["precision"] == 0.0
    assert rows[1]["precision"] == pytest.approx(0.5) and rows[1]["recall"] == 1.0
    rows = precision_recall_table(evaluated.coco_evals["bbox"], score_threshold=0.5)
    assert rows[0]["fp"] == 1
    with pytest.raises(ValueError, match="iou_threshold 0.52"):
        precision_recall_table(evaluated.coco_evals["bbox"], iou_threshold=0.52)


def test_confusion_matrix(evaluated, tmp_path):
    matrix, names = confusion_matrix_from_evaluator(evaluated, score_threshold=0.5)
    assert names == ["one", "two", "background"]
    expected = np.array(
        [
            [0, 1, 0],  # "one" found as "two"
            [0, 1, 0],  # "two" found as "two"
            [1, 0, 0],  # a "one" detection on background
        ]
    )
    np.testing.assert_array_equal(matrix, expected)
    out = plot_confusion_matrix(matrix, names, tmp_path / "plots" / "confusion.png")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 100
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png")

"""SemSegEvaluator: hand-computed metrics, ignore labels, boundaries, parity with Detectron2."""

from __future__ import annotations

import json
import math
import os
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.evaluation.sem_seg_evaluation import SemSegEvaluator, mask_to_boundary


def _register(tmp_path, gts: list[np.ndarray], classes=("a", "b"), ignore_label=255) -> str:
    name = f"evaltest_sem_{uuid.uuid4().hex[:8]}"
    records = []
    for i, gt in enumerate(gts):
        path = tmp_path / f"{name}_{i}.png"
        Image.fromarray(gt.astype(np.uint8)).save(path)
        records.append({"file_name": f"img{i}.jpg", "sem_seg_file_name": str(path)})
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=list(classes), ignore_label=ignore_label)
    return name


def _scores(pred: np.ndarray, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(pred), num_classes).permute(2, 0, 1).float()


def test_hand_computed_metrics_with_ignore(tmp_path):
    gt = np.array([[0, 0, 1], [1, 255, 1]])
    pred = np.array([[0, 1, 1], [1, 0, 1]])
    name = _register(tmp_path, [gt])
    ev = SemSegEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))
    ev.reset()
    ev.process([{"file_name": "img0.jpg"}], [{"sem_seg": _scores(pred, 2)}])
    res = ev.evaluate()["sem_seg"]
    # class a: tp 1, gt 2, pred 1 (the prediction on the ignored pixel does not count)
    # class b: tp 3, gt 3, pred 4
    assert res["IoU-a"] == pytest.approx(50.0)
    assert res["IoU-b"] == pytest.approx(75.0)
    assert res["mIoU"] == pytest.approx(62.5)
    assert res["fwIoU"] == pytest.approx(100 * (0.5 * 2 / 5 + 0.75 * 3 / 5))
    assert res["ACC-a"] == pytest.approx(50.0)
    assert res["ACC-b"] == pytest.approx(100.0)
    assert res["mACC"] == pytest.approx(75.0)
    assert res["pACC"] == pytest.approx(80.0)
    assert "BoundaryIoU-a" in res and "min(IoU, B-Iou)-a" in res
    recs = json.loads((tmp_path / "out" / "sem_seg_predictions.json").read_text())
    assert [r["category_id"] for r in recs] == [0, 1]
    assert [int(mask_util.area(r["segmentation"])) for r in recs] == [2, 4]


def test_absent_class_is_nan(tmp_path):
    gt = np.zeros((3, 3), dtype=np.int64)
    name = _register(tmp_path, [gt], classes=("a", "b", "c"))
    ev = SemSegEvaluator(name, distributed=False)
    ev.process([{"file_name": "img0.jpg"}], [{"sem_seg": _scores(gt, 3)}])
    res = ev.evaluate()["sem_seg"]
    assert res["mIoU"] == pytest.approx(100.0)
    assert math.isnan(res["IoU-b"]) and math.isnan(res["ACC-c"])


def test_mask_to_boundary_ring():
    mask = np.ones((4, 4), dtype=np.uint8)
    expected = np.ones((4, 4), dtype=np.uint8)
    expected[1:3, 1:3] = 0  # a 1-pixel band (dilation = max(1, round(0.02 * 5.66)) = 1)
    np.testing.assert_array_equal(mask_to_boundary(mask), expected)


def test_bad_input(tmp_path):
    gt = np.zeros((3, 3), dtype=np.int64)
    name = _register(tmp_path, [gt])
    ev = SemSegEvaluator(name, distributed=False)
    with pytest.raises(KeyError, match="other.jpg"):
        ev.process([{"file_name": "other.jpg"}], [{"sem_seg": _scores(gt, 2)}])
    with pytest.raises(ValueError, match=r"expected \(2, H, W\)"):
        ev.process([{"file_name": "img0.jpg"}], [{"sem_seg": _scores(gt, 3)}])
    with pytest.raises(ValueError, match="is 2x2, ground truth is 3x3"):
        ev.process([{"file_name": "img0.jpg"}], [{"sem_seg": _scores(gt[:2, :2], 2)}])
    with pytest.raises(ValueError, match="num_classes=5"):
        SemSegEvaluator(name, num_classes=5)


def _panoptic_separated(shapes_dir) -> str:
    from torchdet.data.datasets import register_coco_panoptic_separated

    root = shapes_dir / "val"
    prefix = f"evaltest_pan_{uuid.uuid4().hex[:8]}"
    register_coco_panoptic_separated(
        prefix,
        {
            "stuff_classes": ["things", "sky", "ground"],
            "stuff_dataset_id_to_contiguous_id": {0: 0, 4: 1, 5: 2},
        },
        str(root / "images"),
        str(root / "panoptic"),
        str(root / "panoptic.json"),
        str(root / "panoptic_stuff"),
        str(root / "instances.json"),
    )
    return prefix + "_separated"


def test_parity_panoptic_fpn(parity_dir, shapes_dir):
    """The reference semantic predictions give the reference mIoU, boundary IoU and accuracies."""
    eval_dir = parity_dir / "models" / "panoptic_fpn_R50" / "eval_shapes_pan_val_separated"
    if not eval_dir.is_dir():
        pytest.skip(f"{eval_dir} not found")
    ref = json.loads((eval_dir.parent / "results.json").read_text())
    ref = ref["eval_shapes_pan_val_separated"]["sem_seg"]
    name = _panoptic_separated(shapes_dir)
    c2d = MetadataCatalog.get(name).stuff_dataset_id_to_contiguous_id
    by_stem: dict[str, list] = {}
    for r in json.loads((eval_dir / "sem_seg_predictions.json").read_text()):
        by_stem.setdefault(os.path.splitext(os.path.basename(r["file_name"]))[0], []).append(r)
    ev = SemSegEvaluator(name, distributed=False)
    for d in DatasetCatalog.get(name):
        recs = by_stem[os.path.splitext(os.path.basename(d["file_name"]))[0]]
        h, w = recs[0]["segmentation"]["size"]
        label = np.full((h, w), -1)
        for r in recs:
            label[mask_util.decode(r["segmentation"]).astype(bool)] = c2d[r["category_id"]]
        assert (label >= 0).all()
        ev.process([d], [{"sem_seg": _scores(label, 3)}])
    res = ev.evaluate()["sem_seg"]
    assert set(res) == set(ref)
    for k, v in ref.items():
        assert res[k] == pytest.approx(v, abs=1e-4), k

"""Panoptic quality: hand-computed single-image cases (VOID, crowd, thresholds) and parity."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
import torch

from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.evaluation.panoptic_evaluation import (
    COCOPanopticEvaluator,
    PQStat,
    id2rgb,
    pq_compute_single_image,
    rgb2id,
)

CATS = {1: {"id": 1, "isthing": 1}, 2: {"id": 2, "isthing": 0}}


def _seg(i, cat, area=None, crowd=0):
    s = {"id": i, "category_id": cat, "iscrowd": crowd}
    if area is not None:
        s["area"] = area
    return s


def _summary(stat: PQStat):
    return {name: stat.pq_average(CATS, isthing)[0] for name, isthing in
            (("All", None), ("Things", True), ("Stuff", False))}  # fmt: skip


def test_match_needs_iou_above_half():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[:, :2], gt[:, 2:] = 1, 2
    pred = np.zeros((4, 4), dtype=np.int64)
    pred[:, :3], pred[:, 3] = 5, 6
    stat = pq_compute_single_image(
        gt, [_seg(1, 1, 8), _seg(2, 2, 8)], pred, [_seg(5, 1), _seg(6, 2)], CATS, image_id=1
    )
    # thing: IoU 8/12 > 0.5 -> TP; stuff: IoU 4/8 = 0.5 is not > 0.5 -> one FN and one FP
    assert stat.tp == {1: 1} and stat.fn == {2: 1} and stat.fp == {2: 1}
    s = _summary(stat)
    assert s["Things"]["pq"] == pytest.approx(2 / 3)
    assert s["Stuff"]["pq"] == 0 and s["Stuff"]["rq"] == 0
    assert s["All"]["pq"] == pytest.approx(1 / 3)
    assert s["All"]["sq"] == pytest.approx(1 / 3)
    assert s["All"]["rq"] == pytest.approx(0.5)
    assert s["All"]["n"] == 2


def test_void_is_left_out_of_the_union():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[:, 2] = 2  # column 3 is VOID
    pred = np.zeros((4, 4), dtype=np.int64)
    pred[:, 2:] = 6
    stat = pq_compute_single_image(gt, [_seg(2, 2, 4)], pred, [_seg(6, 2)], CATS, image_id=1)
    # intersection 4, union 8 + 4 - 4 - 4 (on VOID) = 4 -> IoU 1
    assert stat.tp == {2: 1} and stat.iou == {2: pytest.approx(1.0)}
    assert not stat.fp and not stat.fn


def test_crowd_region_absorbs_unmatched_prediction():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[:, :2], gt[:, 2:] = 1, 3
    pred = np.zeros((4, 4), dtype=np.int64)
    pred[:2, 2:] = 7  # inside the crowd region of its category
    gt_segs = [_seg(1, 1, 8), _seg(3, 1, 8, crowd=1)]
    stat = pq_compute_single_image(gt, gt_segs, pred, [_seg(7, 1)], CATS, image_id=1)
    # the crowd segment never matches; the prediction is not a FP; segment 1 is a FN
    assert stat.tp == {} and stat.fp == {} and stat.fn == {1: 1}
    # the same prediction of the other category is a false positive
    stat = pq_compute_single_image(gt, gt_segs, pred, [_seg(7, 2)], CATS, image_id=1)
    assert stat.fp == {2: 1}


def test_empty_prediction_and_empty_ground_truth():
    gt = np.ones((3, 3), dtype=np.int64)
    pred = np.zeros((3, 3), dtype=np.int64)
    stat = pq_compute_single_image(gt, [_seg(1, 1, 9)], pred, [], CATS, image_id=1)
    assert stat.fn == {1: 1} and not stat.tp and not stat.fp
    stat = pq_compute_single_image(pred, [], gt, [_seg(1, 2)], CATS, image_id=1)
    # a prediction entirely on VOID is ignored
    assert not stat.fp and not stat.fn
    # no category with any segment: averages are NaN (panopticapi would divide by zero)
    assert np.isnan(PQStat().pq_average(CATS, None)[0]["pq"])


def test_sanity_errors_name_the_image():
    gt = np.ones((2, 2), dtype=np.int64)
    pred = np.full((2, 2), 4, dtype=np.int64)
    with pytest.raises(KeyError, match="ID 9 segment with ID 4 is presented in PNG"):
        pq_compute_single_image(gt, [_seg(1, 1, 4)], pred, [], CATS, image_id=9)
    with pytest.raises(KeyError, match=r"ID 9 the following segment IDs \[5\]"):
        pq_compute_single_image(gt, [_seg(1, 1, 4)], pred, [_seg(4, 1), _seg(5, 1)], CATS, 9)
    with pytest.raises(KeyError, match="unknown category_id 8"):
        pq_compute_single_image(gt, [_seg(1, 1, 4)], pred, [_seg(4, 8)], CATS, image_id=9)


def test_id_rgb_round_trip():
    ids = np.array([[0, 1, 256], [65536 + 7, 2**24 - 1, 1000]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb[0, 2].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(rgb2id(rgb), ids)


def test_parity_panoptic_fpn(parity_dir, shapes_dir, tmp_path):
    """PNGs rebuilt from the reference panoptic maps give the reference PQ/SQ/RQ, and the
    written predictions.json holds the reference's segments."""
    from torchdet.data.datasets import register_coco_panoptic_separated

    eval_dir = parity_dir / "models" / "panoptic_fpn_R50" / "eval_shapes_pan_val_separated"
    if not eval_dir.is_dir():
        pytest.skip(f"{eval_dir} not found")
    ref = json.loads((eval_dir.parent / "results.json").read_text())
    ref = ref["eval_shapes_pan_val_separated"]["panoptic_seg"]
    root = shapes_dir / "val"
    prefix = f"evaltest_panoptic_parity_{uuid.uuid4().hex[:8]}"
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
    name = prefix + "_separated"
    maps = np.load(eval_dir / "panoptic_seg.npz")
    segments = json.loads((eval_dir / "panoptic_segments.json").read_text())
    ev = COCOPanopticEvaluator(name, output_dir=str(tmp_path))
    assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}
    for d in DatasetCatalog.get(name):
        stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
        ev.process([d], [{"panoptic_seg": (torch.from_numpy(maps[stem]), segments[stem])}])
    res = ev.evaluate()["panoptic_seg"]
    assert set(res) == set(ref)
    for k, v in ref.items():
        assert res[k] == pytest.approx(v, abs=1e-4), k
    mine = json.loads((tmp_path / "predictions.json").read_text())["annotations"]
    theirs = json.loads((eval_dir / "predictions.json").read_text())["annotations"]
    key = lambda a: a["image_id"]  # noqa: E731
    assert [a["segments_info"] for a in sorted(mine, key=key)] == [
        a["segments_info"] for a in sorted(theirs, key=key)
    ]


def test_label_divisor_maps_without_segments_info(tmp_path):
    """Panoptic-DeepLab style output (category * divisor + instance, -1 VOID) is converted to
    segments; a perfect prediction gives PQ 100."""
    from PIL import Image

    from torchdet.evaluation.panoptic_evaluation import id2rgb

    gt_dir = tmp_path / "pan"
    gt_dir.mkdir()
    gt_ids = np.zeros((4, 6), dtype=np.int64)
    gt_ids[:, :3], gt_ids[:, 3:] = 1, 2
    Image.fromarray(id2rgb(gt_ids)).save(gt_dir / "im.png")
    gt_json = tmp_path / "pan.json"
    gt_json.write_text(
        json.dumps(
            {
                "images": [{"id": 3, "file_name": "im.jpg", "height": 4, "width": 6}],
                "categories": [{"id": 7, "isthing": 1}, {"id": 9, "isthing": 0}],
                "annotations": [
                    {
                        "image_id": 3,
                        "file_name": "im.png",
                        "segments_info": [
                            {"id": 1, "category_id": 7, "area": 12, "iscrowd": 0},
                            {"id": 2, "category_id": 9, "area": 12, "iscrowd": 0},
                        ],
                    }
                ],
            }
        )
    )
    name = f"evaltest_pan_divisor_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        panoptic_json=str(gt_json),
        panoptic_root=str(gt_dir),
        thing_dataset_id_to_contiguous_id={7: 0},
        stuff_dataset_id_to_contiguous_id={9: 1},
        label_divisor=1000,
    )
    pred = torch.full((4, 6), 1 * 1000, dtype=torch.int32)  # stuff, contiguous 1
    pred[:, :3] = 0 * 1000 + 5  # thing, contiguous 0, instance 5
    ev = COCOPanopticEvaluator(name)
    ev.process([{"image_id": 3, "file_name": "im.jpg"}], [{"panoptic_seg": (pred, None)}])
    res = ev.evaluate()["panoptic_seg"]
    assert res["PQ"] == pytest.approx(100.0)
    assert res["PQ_th"] == pytest.approx(100.0) and res["PQ_st"] == pytest.approx(100.0)

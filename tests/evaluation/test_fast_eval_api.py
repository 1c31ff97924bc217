"""COCOeval_opt gives exactly pycocotools' arrays, on random data built to hit the corner cases:
crowd regions, tied scores, ties in IoU, ignored and out-of-range ground truth, more detections
than maxDets, images without detections or without ground truth, ground-truth id 0."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from torchdet.evaluation.fast_eval_api import COCOeval_opt


def _random_dataset(seed: int, with_keypoints: bool = False):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "height": 200, "width": 200} for i in range(1, 13)]
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    anns, dets = [], []
    ann_id = 0  # the first ground truth has id 0, which pycocotools reads as "unmatched"
    for img in images[:-1]:  # the last image has no ground truth
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 120, 2).round(0)
            w, h = rng.choice([4.0, 20.0, 40.0, 110.0]), rng.choice([4.0, 20.0, 40.0, 110.0])
            a = {
                "id": ann_id,
                "image_id": img["id"],
                "category_id": int(rng.integers(1, 4)),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": int(rng.uniform() < 0.15),
                # a triangle, so mask IoUs differ from box IoUs
                "segmentation": [[x, y, x + w, y, x, y + h]],
            }
            if with_keypoints:
                kp = np.stack(
                    [rng.uniform(x, x + w, 3), rng.uniform(y, y + h, 3), rng.integers(0, 3, 3)], 1
                )
                a["keypoints"] = kp.ravel().round(1).tolist()
                a["num_keypoints"] = int((kp[:, 2] > 0).sum())
            anns.append(a)
            ann_id += 1
            # detections near the ground truth (some exact copies, so IoUs tie), plus noise
            for _ in range(rng.integers(0, 4)):
                jitter = rng.choice([0.0, 0.0, 2.0, 6.0])
                d = {
                    "image_id": img["id"],
                    "category_id": a["category_id"] if rng.uniform() < 0.8 else 1,
                    "bbox": [x + jitter, y, w, h + jitter],
                    # few distinct values: many ties
                    "score": float(rng.choice([0.3, 0.5, 0.5, 0.9])),
                }
                if with_keypoints:
                    d["keypoints"] = (kp + rng.normal(0, 1.5, kp.shape)).ravel().tolist()
                dets.append(d)
    for img in images[1:]:
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 150, 2)
            d = {
                "image_id": img["id"],
                "category_id": int(rng.integers(1, 4)),
                "bbox": [x, y, 30.0, 30.0],
                "score": float(rng.uniform()),
            }
            if with_keypoints:
                d["keypoints"] = np.stack([rng.uniform(x, x + 30, 3)] * 3, 1).ravel().tolist()
            dets.append(d)
    # image 2 gets many detections, more than maxDets[1] = 10
    for i in range(15):
        d = {"image_id": 2, "category_id": 1, "bbox": [i, i, 50.0, 50.0], "score": 0.4}
        if with_keypoints:
            d["keypoints"] = [i + 1.0, i + 1.0, 1.0] * 3
        dets.append(d)
    gt = {"images": images, "categories": cats, "annotations": anns}
    return gt, dets


def _run(cls, gt_dict, dets, iou_type, **params):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dict)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = cls(gt, dt, iou_type)
        for k, v in params.items():
            setattr(ev.params, k, v)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_identical_to_pycocotools(seed, iou_type):
    gt, dets = _random_dataset(seed)
    ref = _run(COCOeval, gt, dets, iou_type)
    ours = _run(COCOeval_opt, gt, dets, iou_type)
    assert np.array_equal(ref.stats, ours.stats)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ref.eval[key], ours.eval[key]), key
    assert ref.stats[0] > 0  # the case is not degenerate


@pytest.mark.parametrize("seed", [4, 5])
def test_identical_to_pycocotools_keypoints(seed):
    gt, dets = _random_dataset(seed, with_keypoints=True)
    sigmas = np.array([0.05, 0.1, 0.2])
    ref = _run(COCOeval, gt, dets, "keypoints", kpt_oks_sigmas=sigmas)
    ours = _run(COCOeval_opt, gt, dets, "keypoints", kpt_oks_sigmas=sigmas)
    assert np.array_equal(ref.stats, ours.stats)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ref.eval[key], ours.eval[key]), key


def test_identical_without_categories_and_subset_of_images():
    gt, dets = _random_dataset(6)
    params = {"useCats": 0, "imgIds": [1, 2, 3, 5, 8]}
    ref = _run(COCOeval, gt, dets, "bbox", **params)
    ours = _run(COCOeval_opt, gt, dets, "bbox", **params)
    assert np.array_equal(ref.eval["precision"], ours.eval["precision"])
    assert np.array_equal(ref.eval["recall"], ours.eval["recall"])


def test_custom_max_dets():
    gt, dets = _random_dataset(7)
    ref = _run(COCOeval, gt, dets, "bbox", maxDets=[1, 5, 12])
    ours = _run(COCOeval_opt, gt, dets, "bbox", maxDets=[1, 5, 12])
    assert np.array_equal(ref.eval["precision"], ours.eval["precision"])
    assert np.array_equal(ref.eval["recall"], ours.eval["recall"])


def test_accumulate_before_evaluate_raises():
    gt, dets = _random_dataset(0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval_opt(coco, coco.loadRes(dets), "bbox")
    with pytest.raises(RuntimeError, match="evaluate"):
        ev.accumulate()


def test_batched_box_iou_is_bit_identical_to_pycocotools():
    import pycocotools.mask as mask_util

    from torchdet.evaluation.fast_eval_api import _box_iou_xywh

    rng = np.random.default_rng(11)
    dt = np.concatenate([rng.uniform(0, 50, (40, 2)), rng.uniform(0, 40, (40, 2))], 1)
    gt = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(0, 40, (30, 2))], 1)
    gt[:5] = dt[:5]  # exact copies: IoU 1
    gt[5, 2] = 0.0  # a degenerate box
    crowd = rng.uniform(size=30) < 0.3
    ref = mask_util.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist())
    ours = _box_iou_xywh(dt[None], gt[None], crowd[None])[0]
    assert np.array_equal(ref, ours)
    assert ours[np.arange(5), np.arange(5)][~crowd[:5]] == pytest.approx(1.0)

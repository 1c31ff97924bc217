"""COCOEvaluator: parity with Detectron2's numbers, hand-computed AP cases and bad input."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from torchdet.data import MetadataCatalog
from torchdet.data.datasets import register_coco_instances
from torchdet.evaluation import COCOEvaluator, instances_to_coco_json
from torchdet.structures import Boxes, Instances

KP_NAMES = ["apex", "base_left", "base_right"]


def _register(json_file: Path | str, image_root: Path | str, **meta) -> str:
    name = f"evaltest_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, dict(meta), str(json_file), str(image_root))
    return name


def _gt_json(tmp_path: Path, annotations: list[dict], num_images: int = 1, num_cats: int = 1):
    data = {
        "images": [
            {"id": i + 1, "file_name": f"{i + 1}.jpg", "height": 100, "width": 100}
            for i in range(num_images)
        ],
        "categories": [{"id": c + 1, "name": f"c{c + 1}"} for c in range(num_cats)],
        "annotations": [
            {"id": j + 1, "iscrowd": 0, "category_id": 1, "image_id": 1, **a}
            for j, a in enumerate(annotations)
        ],
    }
    for a in data["annotations"]:
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
    path = tmp_path / f"gt_{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(data))
    return _register(path, tmp_path)


def _det(bbox, score, image_id=1, category_id=1):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def _box(x, y, w, h):
    return [float(x), float(y), float(w), float(h)]


# -- parity with Detectron2 -----------------------------------------------------------------


def _parity_models(parity_dir: Path) -> list[Path]:
    dirs = sorted((parity_dir / "models").glob("*/eval_*"))
    if not dirs:
        pytest.skip(f"no models/*/eval_* folders in {parity_dir}")
    return dirs


def test_parity_all_models(parity_dir, shapes_dir):
    """Every model's reference results file gives the stored metrics (to 1e-4)."""
    val = shapes_dir / "val"
    inst = _register(val / "instances.json", val / "images")
    kp = _register(
        val / "keypoints.json",
        val / "images",
        keypoint_names=KP_NAMES,
        keypoint_flip_map=[("base_left", "base_right")],
    )
    checked = 0
    for eval_dir in _parity_models(parity_dir):
        dataset = eval_dir.name[len("eval_") :]
        ref = json.loads((eval_dir.parent / "results.json").read_text())[f"eval_{dataset}"]
        is_kp = "kp" in dataset
        evaluator = COCOEvaluator(
            kp if is_kp else inst,
            distributed=False,
            kpt_oks_sigmas=[0.05] * 3 if is_kp else (),
        )
        res = evaluator.evaluate_results(eval_dir / "coco_instances_results.json")
        for task in ("bbox", "segm", "keypoints"):
            if task not in ref:
                assert task not in res, (eval_dir, task)
                continue
            assert set(res[task]) == set(ref[task]), (eval_dir, task)
            for metric, value in ref[task].items():
                if math.isnan(value):
                    assert math.isnan(res[task][metric]), (eval_dir, task, metric)
                else:
                    assert res[task][metric] == pytest.approx(value, abs=1e-4), (
                        eval_dir,
                        task,
                        metric,
                    )
                checked += 1
    assert checked > 100


# -- hand-computed cases ----------------------------------------------------------------------


def test_single_perfect_detection_is_ap_100(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}])
    res = COCOEvaluator(name, distributed=False).evaluate_results([_det(_box(10, 10, 50, 50), 0.9)])
    bbox = res["bbox"]
    assert bbox["AP"] == pytest.approx(100.0)
    assert bbox["AP50"] == pytest.approx(100.0)
    assert bbox["AP75"] == pytest.approx(100.0)
    assert bbox["APm"] == pytest.approx(100.0)  # area 2500 is "medium"
    assert math.isnan(bbox["APs"]) and math.isnan(bbox["APl"])  # no ground truth there


def test_half_overlap_matches_only_at_iou_050(tmp_path):
    # gt [0, 10] x [0, 10], detection [5, 10] x [0, 10]: IoU = 50 / 100 = 0.5 exactly,
    # which counts at the 0.50 threshold (IoU >= t) and at no other.
    name = _gt_json(tmp_path, [{"bbox": _box(0, 0, 10, 10)}])
    res = COCOEvaluator(name, distributed=False).evaluate_results([_det(_box(5, 0, 5, 10), 0.5)])
    assert res["bbox"]["AP50"] == pytest.approx(100.0)
    assert res["bbox"]["AP75"] == pytest.approx(0.0)
    assert res["bbox"]["AP"] == pytest.approx(10.0)  # 1 of 10 thresholds
    assert res["bbox"]["APs"] == pytest.approx(10.0)


def test_interpolated_precision_hand_computed(tmp_path):
    # Two ground truths; detections by score: TP, FP, TP.
    # recall [.5, .5, 1], precision [1, .5, 2/3] -> interpolated [1, 2/3, 2/3]:
    # 51 recall thresholds (0 .. 0.50) at 1, 50 (0.51 .. 1) at 2/3.
    name = _gt_json(tmp_path, [{"bbox": _box(0, 0, 40, 40)}, {"bbox": _box(50, 50, 40, 40)}])
    dets = [
        _det(_box(0, 0, 40, 40), 0.9),
        _det(_box(0, 50, 40, 40), 0.8),
        _det(_box(50, 50, 40, 40), 0.7),
    ]
    res = COCOEvaluator(name, distributed=False).evaluate_results(dets)
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101 * 100
    assert res["bbox"]["AP"] == pytest.approx(expected, abs=1e-9)


def test_crowd_region_ignores_detections_inside_it(tmp_path):
    # The top-scoring detection lies inside a crowd region: ignored, not a false positive.
    # Were it a false positive, AP would be 50 (precision 1/2 at full recall).
    name = _gt_json(
        tmp_path,
        [
            {"bbox": _box(0, 0, 40, 40)},
            {"bbox": _box(50, 50, 50, 50), "iscrowd": 1},
        ],
    )
    dets = [_det(_box(60, 60, 20, 20), 0.95), _det(_box(0, 0, 40, 40), 0.9)]
    res = COCOEvaluator(name, distributed=False).evaluate_results(dets)
    assert res["bbox"]["AP"] == pytest.approx(100.0)


def test_category_without_ground_truth_is_nan(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}], num_cats=2)
    dets = [_det(_box(10, 10, 50, 50), 0.9), _det(_box(10, 10, 50, 50), 0.8, category_id=2)]
    res = COCOEvaluator(name, distributed=False).evaluate_results(dets)
    assert res["bbox"]["AP-c1"] == pytest.approx(100.0)
    assert math.isnan(res["bbox"]["AP-c2"])
    assert res["bbox"]["AP"] == pytest.approx(100.0)  # mean over categories with ground truth


def test_no_ground_truth_at_all_gives_nan(tmp_path):
    name = _gt_json(tmp_path, [], num_images=2)
    res = COCOEvaluator(name, distributed=False).evaluate_results([_det(_box(1, 1, 5, 5), 0.9)])
    assert all(math.isnan(v) for v in res["bbox"].values())


def test_empty_predictions(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}])
    evaluator = COCOEvaluator(name, distributed=False)
    # nothing processed: no results, as Detectron2
    assert evaluator.evaluate() == {}
    # an image processed with zero instances: every metric NaN
    empty = Instances((100, 100), pred_boxes=Boxes(torch.zeros(0, 4)))
    empty.scores = torch.zeros(0)
    empty.pred_classes = torch.zeros(0, dtype=torch.int64)
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [{"instances": empty}])
    res = evaluator.evaluate()
    assert set(res) == {"bbox"}
    assert set(res["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert all(math.isnan(v) for v in res["bbox"].values())


def test_process_instances_with_masks_and_output_files(tmp_path):
    name = _gt_json(
        tmp_path,
        [{"bbox": _box(10, 20, 30, 40), "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]}],
    )
    MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id = {1: 0}
    MetadataCatalog.get(name).thing_classes = ["c1"]
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 20.0, 40.0, 60.0]]))
    inst.scores = torch.tensor([0.75])
    inst.pred_classes = torch.tensor([0])
    masks = torch.zeros(1, 100, 100, dtype=torch.bool)
    masks[0, 20:60, 10:40] = True
    inst.pred_masks = masks
    out = tmp_path / "out"
    evaluator = COCOEvaluator(name, distributed=False, output_dir=str(out))
    evaluator.process([{"image_id": 1, "height": 100, "width": 100}], [{"instances": inst}])
    res = evaluator.evaluate()
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(100.0)
    written = json.loads((out / "coco_instances_results.json").read_text())
    assert written[0]["category_id"] == 1  # mapped back to the dataset id
    assert written[0]["bbox"] == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert mask_util.area(written[0]["segmentation"]) == 30 * 40
    assert (out / "instances_predictions.pth").is_file()


def test_instances_to_coco_json_values():
    inst = Instances((10, 20))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 5.0, 8.0], [0.0, 0.0, 1.0, 1.0]]))
    inst.scores = torch.tensor([0.5, 0.25])
    inst.pred_classes = torch.tensor([2, 0])
    kps = torch.tensor([[[1.5, 2.5, 0.9]], [[0.5, 0.5, 0.1]]])
    inst.pred_keypoints = kps
    masks = torch.zeros(2, 10, 20, dtype=torch.bool)
    masks[0, 2:8, 1:5] = True
    inst.pred_masks = masks
    recs = instances_to_coco_json(inst, 7)
    assert [r["image_id"] for r in recs] == [7, 7]
    assert [r["category_id"] for r in recs] == [2, 0]
    assert recs[0]["bbox"] == pytest.approx([1.0, 2.0, 4.0, 6.0])
    assert recs[1]["score"] == pytest.approx(0.25)
    assert recs[0]["keypoints"] == pytest.approx([1.0, 2.0, 0.9])  # -0.5 pixel shift
    assert kps[0, 0, 0] == 1.5  # the input is not modified
    assert mask_util.area(recs[0]["segmentation"]) == 24
    assert mask_util.area(recs[1]["segmentation"]) == 0
    assert recs[0]["segmentation"]["size"] == [10, 20]
    assert instances_to_coco_json(inst[:0], 7) == []


def test_max_dets_per_image(tmp_path):
    # 12 detections on one image, the only true positive ranked last: with the default limit
    # of 100 it counts, with a limit of 10 it does not.
    name = _gt_json(tmp_path, [{"bbox": _box(0, 0, 40, 40)}])
    dets = [_det(_box(50, 50, 10, 10 + i), 0.9 - 0.01 * i) for i in range(11)]
    dets.append(_det(_box(0, 0, 40, 40), 0.1))
    default = COCOEvaluator(name, distributed=False).evaluate_results(dets)
    limited = COCOEvaluator(name, distributed=False, max_dets_per_image=10).evaluate_results(dets)
    assert default["bbox"]["AP"] == pytest.approx(100 / 12, abs=1e-9)
    assert limited["bbox"]["AP"] == pytest.approx(0.0)


def test_fast_and_official_paths_agree(tmp_path):
    rng = np.random.default_rng(0)
    anns = [{"bbox": _box(*rng.uniform(0, 50, 2), *rng.uniform(5, 50, 2))} for _ in range(6)]
    name = _gt_json(tmp_path, anns)
    dets = [
        _det(_box(*rng.uniform(0, 50, 2), *rng.uniform(5, 50, 2)), float(rng.uniform()))
        for _ in range(20)
    ]
    fast = COCOEvaluator(name, distributed=False).evaluate_results(dets)
    slow = COCOEvaluator(name, distributed=False, use_fast_impl=False).evaluate_results(dets)
    for k, v in slow["bbox"].items():
        assert (math.isnan(v) and math.isnan(fast["bbox"][k])) or v == fast["bbox"][k]


# -- bad input ------------------------------------------------------------------------------


def test_unknown_image_id_is_named(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}])
    ev = COCOEvaluator(name, distributed=False)
    with pytest.raises(ValueError, match="record 1 has image id 99"):
        ev.evaluate_results([_det(_box(1, 1, 5, 5), 0.9), _det(_box(1, 1, 5, 5), 0.8, 99)])


def test_unknown_category_id_is_named(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}])
    ev = COCOEvaluator(name, distributed=False)
    with pytest.raises(ValueError, match="record 0 .*category id 5"):
        ev.evaluate_results([_det(_box(1, 1, 5, 5), 0.9, category_id=5)])


def test_nan_box_is_named(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}])
    ev = COCOEvaluator(name, distributed=False)
    with pytest.raises(ValueError, match="record 1 .*non-finite bbox"):
        ev.evaluate_results([_det(_box(1, 1, 5, 5), 0.9), _det([1, float("nan"), 5, 5], 0.8)])


def test_wrong_mask_size_is_named(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(10, 10, 50, 50)}])
    ev = COCOEvaluator(name, distributed=False)
    rle = mask_util.encode(np.asfortranarray(np.ones((50, 60), dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode()
    rec = {**_det(_box(1, 1, 5, 5), 0.9), "segmentation": rle}
    with pytest.raises(ValueError, match=r"record 0 \(image id 1\) has a mask of size \[50, 60\]"):
        ev.evaluate_results([rec])
    inst = Instances((50, 60))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 1.0, 5.0, 5.0]]))
    inst.scores = torch.tensor([0.9])
    inst.pred_classes = torch.tensor([0])
    inst.pred_masks = torch.ones(1, 50, 60, dtype=torch.bool)
    with pytest.raises(ValueError, match="image id 1: pred_masks are 50x60"):
        ev.process([{"image_id": 1, "height": 100, "width": 100}], [{"instances": inst}])


def test_unknown_task_and_missing_json():
    with pytest.raises(ValueError, match="unknown tasks"):
        COCOEvaluator("evaltest_unused", tasks=("boxes",))
    name = f"evaltest_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, "/nonexistent/x.json", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="/nonexistent/x.json"):
        COCOEvaluator(name, distributed=False)


# -- other paths ----------------------------------------------------------------------------


def test_box_proposals_recall(tmp_path):
    # gt boxes (XYXY) [0, 0, 100, 100] (area 10000: "large") and [200, 200, 250, 250];
    # proposals: [0, 0, 100, 68] (IoU 0.68: recalled at 0.50 .. 0.65) and an exact one.
    # AR = (4 * 2/2 + 6 * 1/2) / 10 = 0.7
    name = _gt_json(tmp_path, [{"bbox": _box(0, 0, 100, 100)}, {"bbox": _box(200, 200, 50, 50)}])
    props = Instances((300, 300))
    props.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 100.0, 68.0], [200, 200, 250, 250]]))
    props.objectness_logits = torch.tensor([1.0, 0.5])
    ev = COCOEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))
    ev.process([{"image_id": 1}], [{"proposals": props}])
    res = ev.evaluate()["box_proposals"]
    assert res["AR@100"] == pytest.approx(70.0)
    assert res["AR@1000"] == pytest.approx(70.0)
    assert res["ARl@100"] == pytest.approx(40.0)  # only the first gt is large: 4 / 10
    assert res["ARm@100"] == pytest.approx(100.0)  # 2500 px: medium, found exactly
    assert math.isnan(res["ARs@100"])  # no small ground truth
    assert (tmp_path / "out" / "box_proposals.pkl").is_file()


def test_dataset_without_json_is_converted(tmp_path):
    from torchdet.data import DatasetCatalog
    from torchdet.structures import BoxMode

    name = f"evaltest_{uuid.uuid4().hex[:8]}"
    records = [
        {
            "file_name": "a.jpg",
            "image_id": 5,
            "height": 64,
            "width": 64,
            "annotations": [
                {"bbox": [8.0, 8.0, 40.0, 40.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1}
            ],
        }
    ]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).thing_classes = ["a", "b"]
    with pytest.raises(ValueError, match="output_dir"):
        COCOEvaluator(name, distributed=False)
    ev = COCOEvaluator(name, distributed=False, output_dir=str(tmp_path))
    assert (tmp_path / f"{name}_coco_format.json").is_file()
    inst = Instances((64, 64))
    inst.pred_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0], [8.0, 8.0, 40.0, 40.0]]))
    inst.scores = torch.tensor([0.9, 0.8])
    inst.pred_classes = torch.tensor([1, 0])
    ev.process([{"image_id": 5}], [{"instances": inst}])
    res = ev.evaluate()["bbox"]
    assert res["AP-b"] == pytest.approx(100.0)
    assert math.isnan(res["AP-a"])


def test_max_dets_official_path_agrees(tmp_path):
    name = _gt_json(tmp_path, [{"bbox": _box(0, 0, 40, 40)}, {"bbox": _box(50, 0, 40, 40)}])
    dets = [_det(_box(50, 50, 10, 10 + i), 0.9 - 0.01 * i) for i in range(11)]
    dets += [_det(_box(0, 0, 40, 40), 0.95), _det(_box(50, 0, 40, 40), 0.1)]
    fast = COCOEvaluator(name, distributed=False, max_dets_per_image=11).evaluate_results(dets)
    slow = COCOEvaluator(
        name, distributed=False, max_dets_per_image=11, use_fast_impl=False
    ).evaluate_results(dets)
    # the top 11 by score: one TP then 10 FPs; the second TP (rank 13) is cut:
    # precision 1 up to recall 0.5 (51 of 101 recall thresholds), 0 beyond
    assert fast["bbox"]["AP"] == slow["bbox"]["AP"] == pytest.approx(100 * 51 / 101)


@pytest.mark.parametrize("model", ["mask_rcnn_R50_FPN", "keypoint_rcnn_R50_FPN"])
def test_parity_through_inference_on_dataset(parity_dir, shapes_dir, model):
    """Model outputs rebuilt from the reference results (Instances with boxes, masks and
    keypoints) go through inference_on_dataset + process: same metrics as the reference."""
    from torchdet.data import DatasetCatalog
    from torchdet.evaluation import inference_on_dataset

    eval_dirs = list((parity_dir / "models" / model).glob("eval_*"))
    if not eval_dirs:
        pytest.skip(f"no reference evaluation for {model}")
    eval_dir = eval_dirs[0]
    dataset = eval_dir.name[len("eval_") :]
    ref = json.loads((eval_dir.parent / "results.json").read_text())[f"eval_{dataset}"]
    val = shapes_dir / "val"
    is_kp = "kp" in dataset
    meta = {"keypoint_names": KP_NAMES} if is_kp else {}
    name = _register(
        val / ("keypoints.json" if is_kp else "instances.json"), val / "images", **meta
    )
    dicts = DatasetCatalog.get(name)
    to_contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    by_image: dict[int, list[dict]] = {}
    for r in json.loads((eval_dir / "coco_instances_results.json").read_text()):
        by_image.setdefault(r["image_id"], []).append(r)

    def fake_model(batch):
        outputs = []
        for d in batch:
            recs = by_image.get(d["image_id"], [])
            inst = Instances((d["height"], d["width"]))
            xywh = torch.tensor([r["bbox"] for r in recs], dtype=torch.float64).reshape(-1, 4)
            xywh[:, 2:] += xywh[:, :2]
            inst.pred_boxes = Boxes(xywh.float())
            inst.scores = torch.tensor([r["score"] for r in recs], dtype=torch.float32)
            inst.pred_classes = torch.tensor(
                [to_contiguous[r["category_id"]] for r in recs], dtype=torch.int64
            )
            if recs and "segmentation" in recs[0]:
                masks = mask_util.decode([r["segmentation"] for r in recs])  # (H, W, N)
                inst.pred_masks = torch.from_numpy(masks).permute(2, 0, 1).bool()
            if recs and "keypoints" in recs[0]:
                kp = torch.tensor([r["keypoints"] for r in recs]).reshape(len(recs), -1, 3)
                kp[:, :, :2] += 0.5  # model coordinates: COCO's pixel indices + 0.5
                inst.pred_keypoints = kp
            outputs.append({"instances": inst})
        return outputs

    evaluator = COCOEvaluator(name, kpt_oks_sigmas=[0.05] * 3 if is_kp else ())
    res = inference_on_dataset(fake_model, [[d] for d in dicts], evaluator)
    for task, metrics in ref.items():
        for metric, value in metrics.items():
            if math.isnan(value):
                assert math.isnan(res[task][metric]), (task, metric)
            else:
                # boxes pass through float32 XYXY here, as in the reference model's output
                assert res[task][metric] == pytest.approx(value, abs=1e-4), (task, metric)


def test_load_coco_results_matches_load_res(tmp_path):
    """Batched mask areas / boxes (300 masks: more than pycocotools' 255-object area() limit
    under numpy 2) equal pycocotools' per-record loadRes."""
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO

    from torchdet.evaluation.coco_evaluation import load_coco_results

    name = _gt_json(tmp_path, [{"bbox": _box(0, 0, 10, 10)}])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(MetadataCatalog.get(name).json_file)
    rng = np.random.default_rng(0)
    masks = np.asfortranarray((rng.uniform(size=(100, 100, 300)) < 0.3).astype(np.uint8))
    recs = []
    for i, rle in enumerate(mask_util.encode(masks)):
        rle["counts"] = rle["counts"].decode()
        recs.append({"image_id": 1, "category_id": 1, "score": float(i), "segmentation": rle})
    ours = load_coco_results(gt, copy.deepcopy(recs))
    with contextlib.redirect_stdout(io.StringIO()):
        ref = gt.loadRes(copy.deepcopy(recs))
    assert len(ours.anns) == len(ref.anns) == 300
    for i in ref.anns:
        a, b = ours.anns[i], ref.anns[i]
        assert a["area"] == b["area"] and type(a["area"]) is type(b["area"])
        assert np.array_equal(a["bbox"], b["bbox"])
        assert (a["id"], a["iscrowd"]) == (b["id"], b["iscrowd"])

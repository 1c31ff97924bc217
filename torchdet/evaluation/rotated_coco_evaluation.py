"""COCO-style AP for rotated boxes (``cx, cy, w, h, angle`` in degrees, counter-clockwise)."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import pycocotools.mask as mask_util
import torch

from torchdet.structures import BoxMode, Instances, RotatedBoxes, pairwise_iou_rotated

from .coco_evaluation import COCOEvaluator
from .fast_eval_api import COCOeval_opt

__all__ = ["RotatedCOCOEvaluator", "RotatedCOCOeval"]

logger = logging.getLogger(__name__)


class RotatedCOCOeval(COCOeval_opt):
    """COCOeval whose box IoU handles rotated boxes (5 numbers); 4-number boxes keep
    pycocotools' IoU. Crowd ground truth is not supported with rotated boxes."""

    @staticmethod
    def is_rotated(box_list) -> bool:
        if isinstance(box_list, np.ndarray):
            return box_list.ndim == 2 and box_list.shape[1] == 5
        if isinstance(box_list, list):
            if not box_list:  # the box size cannot be told
                return False
            return all(isinstance(b, (list, np.ndarray)) and len(b) == 5 for b in box_list)
        return False

    @staticmethod
    def boxlist_to_tensor(boxlist, output_box_dim: int) -> torch.Tensor:
        """Boxes as a float tensor of ``output_box_dim`` columns (XYWH becomes XYWHA)."""
        if isinstance(boxlist, np.ndarray):
            box_tensor = torch.from_numpy(boxlist)
        elif isinstance(boxlist, list):
            if not boxlist:
                return torch.zeros((0, output_box_dim), dtype=torch.float32)
            box_tensor = torch.tensor(boxlist, dtype=torch.float32)
        else:
            raise TypeError(f"RotatedCOCOeval: unrecognized box list type {type(boxlist)}")
        input_box_dim = box_tensor.shape[1]
        if input_box_dim != output_box_dim:
            if input_box_dim == 4 and output_box_dim == 5:
                box_tensor = BoxMode.convert(box_tensor, BoxMode.XYWH_ABS, BoxMode.XYWHA_ABS)
            else:
                raise ValueError(
                    f"RotatedCOCOeval: cannot convert {input_box_dim}-d boxes to {output_box_dim}-d"
                )
        return box_tensor

    def compute_iou_dt_gt(self, dt, gt, is_crowd) -> np.ndarray:
        if self.is_rotated(dt) or self.is_rotated(gt):
            if any(c != 0 for c in is_crowd):
                raise ValueError("RotatedCOCOeval: crowd ground truth is not supported")
            dt = RotatedBoxes(self.boxlist_to_tensor(dt, output_box_dim=5))
            gt = RotatedBoxes(self.boxlist_to_tensor(gt, output_box_dim=5))
            return pairwise_iou_rotated(dt, gt).numpy()
        return mask_util.iou(dt, gt, is_crowd)

    def computeIoU(self, imgId, catId):  # noqa: N802 - pycocotools' name
        p = self.params
        if p.useCats:
            gt = self._gts[imgId, catId]
            dt = self._dts[imgId, catId]
        else:
            gt = [g for c in p.catIds for g in self._gts[imgId, c]]
            dt = [d for c in p.catIds for d in self._dts[imgId, c]]
        if len(gt) == 0 and len(dt) == 0:
            return []
        inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in inds][: p.maxDets[-1]]
        if p.iouType != "bbox":
            raise ValueError(f"RotatedCOCOeval: only iouType 'bbox' is supported, got {p.iouType}")
        if len(gt) == 0 or len(dt) == 0:
            return []
        return self.compute_iou_dt_gt(
            [d["bbox"] for d in dt], [g["bbox"] for g in gt], [int(o["iscrowd"]) for o in gt]
        )


class RotatedCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator for rotated boxes: ``pred_boxes`` are ``RotatedBoxes`` (or ``Boxes``),
    ground truth ``bbox`` has 5 numbers; only the ``bbox`` task."""

    _box_dims = (4, 5)

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, output in zip(inputs, outputs):
            prediction = {"image_id": inp["image_id"]}
            if "instances" in output:
                instances = output["instances"].to(self._cpu_device)
                prediction["instances"] = self.instances_to_json(instances, inp["image_id"])
            if "proposals" in output:
                prediction["proposals"] = output["proposals"].to(self._cpu_device)
            self._predictions.append(prediction)

    def instances_to_json(self, instances: Instances, img_id: int) -> list[dict]:
        """Records with ``bbox`` as XYWHA (rotated) or XYWH (axis-aligned predictions)."""
        if len(instances) == 0:
            return []
        boxes = instances.pred_boxes.tensor.numpy()
        if boxes.shape[1] == 4:
            boxes = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
        return [
            {"image_id": img_id, "category_id": c, "bbox": b, "score": s}
            for b, s, c in zip(
                boxes.tolist(), instances.scores.tolist(), instances.pred_classes.tolist()
            )
        ]

    def _eval_predictions(self, predictions: list[dict], img_ids=None) -> None:
        if self._tasks is not None and set(self._tasks) != {"bbox"}:
            raise ValueError("RotatedCOCOEvaluator: only the 'bbox' task is supported")
        super()._eval_predictions(predictions, img_ids)

    def _tasks_from_predictions(self, predictions: list[dict]) -> list[str]:
        return ["bbox"]

    def _run_coco_eval(self, coco_results: list[dict], task: str, img_ids) -> RotatedCOCOeval:
        coco_results = [dict(c) for c in coco_results]
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = self._coco_api.loadRes(coco_results)
        coco_eval = RotatedCOCOeval(self._coco_api, coco_dt, iouType="bbox")
        if img_ids is not None:
            coco_eval.params.imgIds = list(img_ids)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.info("RotatedCOCOeval:\n%s", out.getvalue().rstrip())
        return coco_eval

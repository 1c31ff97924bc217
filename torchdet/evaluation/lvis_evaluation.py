"""LVIS evaluation (AP with rare/common/frequent splits) through the optional ``lvis`` package
(``pip install lvis``)."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch

from torchdet.data import MetadataCatalog
from torchdet.utils.file_io import PathManager

from .coco_evaluation import _evaluate_box_proposals, _table, instances_to_coco_json
from .evaluator import DatasetEvaluator, _comm

__all__ = ["LVISEvaluator"]

logger = logging.getLogger(__name__)

_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"]


def _lvis() -> ModuleType:
    try:
        import lvis
    except ImportError as e:
        raise ImportError(
            f"LVISEvaluator needs the 'lvis' package ({e}). Install it with `pip install lvis`."
        ) from e
    return lvis


class _LVISAsCOCO:
    """The two COCO-API calls proposal recall needs, answered by an LVIS object."""

    def __init__(self, lvis_api: Any):
        self._api = lvis_api

    def getAnnIds(self, imgIds):  # noqa: N802, N803 - pycocotools' names
        return self._api.get_ann_ids(img_ids=[imgIds])

    def loadAnns(self, ids):  # noqa: N802
        # LVIS has no crowd annotations
        return [{**a, "iscrowd": 0} for a in self._api.load_anns(ids)]


class LVISEvaluator(DatasetEvaluator):
    """Evaluate object proposal AR and instance detection/segmentation AP with LVIS metrics."""

    def __init__(
        self,
        dataset_name: str,
        tasks: Sequence[str] | None = None,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        max_dets_per_image: int | None = None,
    ):
        """
        Args:
            dataset_name: a registered LVIS dataset (metadata ``json_file``).
            tasks: subset of ``("bbox", "segm")``; None infers them from the predictions.
            distributed: gather from all ranks and evaluate on the main one.
            output_dir: where ``instances_predictions.pth`` and ``lvis_instances_results.json``
                are written.
            max_dets_per_image: detections kept per image (LVIS default 300).
        """
        lvis = _lvis()
        if tasks is not None and not set(tasks) <= {"bbox", "segm"}:
            raise ValueError(f"LVISEvaluator: tasks must be bbox and/or segm, got {tasks!r}")
        self._tasks = tuple(tasks) if tasks is not None else None
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets_per_image = max_dets_per_image
        self._cpu_device = torch.device("cpu")
        self._metadata = MetadataCatalog.get(dataset_name)
        if self._metadata.get("json_file") is None:
            raise KeyError(f"LVISEvaluator: metadata of '{dataset_name}' has no json_file")
        json_file = PathManager.get_local_path(os.fspath(self._metadata.json_file))
        self._lvis_api = lvis.LVIS(json_file)
        # test-set jsons have no annotations: results are only written
        self._do_evaluation = len(self._lvis_api.get_ann_ids()) > 0
        self.reset()

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, output in zip(inputs, outputs):
            prediction: dict[str, Any] = {"image_id": inp["image_id"]}
            if "instances" in output:
                instances = output["instances"].to(self._cpu_device)
                prediction["instances"] = instances_to_coco_json(instances, inp["image_id"])
            if "proposals" in output:
                prediction["proposals"] = output["proposals"].to(self._cpu_device)
            self._predictions.append(prediction)

    def evaluate(self) -> OrderedDict | dict:
        comm = _comm()
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        if len(predictions) == 0:
            logger.warning("[LVISEvaluator] Did not receive valid predictions.")
            return {}
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(
                os.path.join(self._output_dir, "instances_predictions.pth"), "wb"
            ) as f:
                torch.save(predictions, f)
        self._results: OrderedDict = OrderedDict()
        if "proposals" in predictions[0]:
            self._eval_box_proposals(predictions)
        if "instances" in predictions[0]:
            self._eval_predictions(predictions)
        return copy.deepcopy(self._results)

    def _eval_predictions(self, predictions: list[dict]) -> None:
        lvis_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or (
            ("bbox", "segm") if any("segmentation" in r for r in lvis_results) else ("bbox",)
        )
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if mapping is not None:  # e.g. COCO categories evaluated with the LVIS API
            reverse = {v: k for k, v in mapping.items()}
            for r in lvis_results:
                r["category_id"] = reverse[r["category_id"]]
        else:  # LVIS ids are the contiguous ids + 1
            for r in lvis_results:
                r["category_id"] += 1
        if self._output_dir:
            path = os.path.join(self._output_dir, "lvis_instances_results.json")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(lvis_results))
        if not self._do_evaluation:
            return
        for task in sorted(tasks):
            self._results[task] = _evaluate_predictions_on_lvis(
                self._lvis_api, lvis_results, task, max_dets_per_image=self._max_dets_per_image
            )

    def _eval_box_proposals(self, predictions: list[dict]) -> None:
        if not self._do_evaluation:
            return
        api = _LVISAsCOCO(self._lvis_api)
        res = {}
        for limit in (100, 1000):
            for area, suffix in (("all", ""), ("small", "s"), ("medium", "m"), ("large", "l")):
                stats = _evaluate_box_proposals(predictions, api, area=area, limit=limit)
                res[f"AR{suffix}@{limit}"] = float(stats["ar"].item() * 100)
        logger.info("Proposal metrics: \n%s", _table(list(res.items())))
        self._results["box_proposals"] = res


def _evaluate_predictions_on_lvis(
    lvis_gt: Any, lvis_results: list[dict], iou_type: str, max_dets_per_image: int | None = None
) -> dict:
    """AP, AP50, AP75, APs/m/l and APr/c/f (percent) of one task."""
    if len(lvis_results) == 0:
        logger.warning("No predictions from the model!")
        return {metric: float("nan") for metric in _METRICS}
    if iou_type == "segm":
        # the box area would otherwise define small/medium/large
        lvis_results = [{k: v for k, v in r.items() if k != "bbox"} for r in lvis_results]
    lvis = _lvis()
    results = lvis.LVISResults(lvis_gt, lvis_results, max_dets=max_dets_per_image or 300)
    lvis_eval = lvis.LVISEval(lvis_gt, results, iou_type)
    lvis_eval.run()
    lvis_eval.print_results()
    res = lvis_eval.get_results()
    out = {metric: float(res[metric] * 100) for metric in _METRICS}
    logger.info("Evaluation results for %s: \n%s", iou_type, _table(list(out.items())))
    return out

"""COCO-style evaluation of boxes, masks, keypoints and proposals (AP/AR with pycocotools rules)."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from torchdet.data import MetadataCatalog
from torchdet.data.datasets.coco import convert_to_coco_json
from torchdet.structures import Boxes, BoxMode, Instances, pairwise_iou
from torchdet.utils.file_io import PathManager

from .coco_results import validate_coco_results
from .evaluator import DatasetEvaluator, _comm
from .fast_eval_api import COCOeval_opt

__all__ = [
    "COCOEvaluator",
    "COCOevalMaxDets",
    "instances_to_coco_json",
    "validate_coco_results",
]

logger = logging.getLogger(__name__)

_METRICS = {
    "bbox": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
    "segm": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
    "keypoints": ["AP", "AP50", "AP75", "APm", "APl"],
}


def _load_coco_api(json_file: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(PathManager.get_local_path(json_file))


class COCOEvaluator(DatasetEvaluator):
    """Evaluate AR for object proposals and AP for instance detection, instance segmentation
    and keypoint detection with the COCO metrics (pycocotools rules, faster implementation).

    Results are in percent (0-100); a metric that is undefined (no ground truth in its area
    range, e.g. ``APl`` on small images) is NaN.
    """

    _box_dims: tuple[int, ...] = (4,)  # accepted "bbox" lengths in result records

    def __init__(
        self,
        dataset_name: str,
        tasks: Sequence[str] | None = None,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        max_dets_per_image: int | None = None,
        use_fast_impl: bool = True,
        kpt_oks_sigmas: Sequence[float] = (),
        allow_cached_coco: bool = True,
    ):
        """
        Args:
            dataset_name: a registered dataset. Its metadata needs ``json_file`` (COCO
                annotations); without it, the dataset is converted with
                :func:`convert_to_coco_json` into ``output_dir``.
            tasks: subset of ``("bbox", "segm", "keypoints")``; None infers them from the
                predictions.
            distributed: gather results from all ranks and evaluate on the main one.
            output_dir: where ``instances_predictions.pth`` and
                ``coco_instances_results.json`` are written.
            max_dets_per_image: detections per image for AP (default 100).
            use_fast_impl: use :class:`COCOeval_opt` (identical numbers) instead of pycocotools.
            kpt_oks_sigmas: per-keypoint OKS sigmas (default: pycocotools' COCO person ones).
            allow_cached_coco: reuse a previously converted COCO json in ``output_dir``.
        """
        if tasks is not None:
            if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks):
                raise TypeError(
                    f"COCOEvaluator: tasks must be a sequence of task names, got {tasks!r}"
                )
            bad = set(tasks) - set(_METRICS)
            if bad:
                raise ValueError(
                    f"COCOEvaluator: unknown tasks {sorted(bad)}; expected a subset of "
                    f"{sorted(_METRICS)}"
                )
        self._logger = logger
        self._distributed = distributed
        self._output_dir = output_dir
        self._use_fast_impl = use_fast_impl
        if max_dets_per_image is None:
            self._max_dets_per_image = [1, 10, 100]
        else:
            if int(max_dets_per_image) < 10:
                raise ValueError(
                    f"COCOEvaluator: max_dets_per_image must be >= 10, got {max_dets_per_image}"
                )
            self._max_dets_per_image = [1, 10, int(max_dets_per_image)]
        self._tasks = tuple(tasks) if tasks is not None else None
        self._cpu_device = torch.device("cpu")
        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        if not hasattr(self._metadata, "json_file") or self._metadata.json_file is None:
            if output_dir is None:
                raise ValueError(
                    f"COCOEvaluator: dataset '{dataset_name}' has no 'json_file' in its metadata; "
                    "pass output_dir so it can be converted to COCO format there"
                )
            self._logger.info("'%s' is not in COCO format; converting it", dataset_name)
            cache_path = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
            self._metadata.json_file = cache_path
            convert_to_coco_json(dataset_name, cache_path, allow_cached=allow_cached_coco)
        json_file = self._metadata.json_file
        if not PathManager.exists(json_file):
            raise FileNotFoundError(
                f"COCOEvaluator: annotation file '{json_file}' of dataset '{dataset_name}' "
                "does not exist"
            )
        self._coco_api = _load_coco_api(json_file)
        # Test sets may come without annotations: then only the results file is written.
        self._do_evaluation = "annotations" in self._coco_api.dataset
        self._kpt_oks_sigmas = tuple(kpt_oks_sigmas)
        self._coco_evals: dict[str, COCOeval] = {}
        self.reset()

    # -- metadata helpers ------------------------------------------------------------------

    def _id_mapping(self) -> dict[int, int] | None:
        """dataset category id -> contiguous id, from metadata or the annotation file."""
        mapping = self._metadata.get("thing_dataset_id_to_contiguous_id")
        if mapping is None and self._coco_api.cats:
            mapping = {c: i for i, c in enumerate(sorted(self._coco_api.cats))}
        return mapping

    def _class_names(self) -> list[str] | None:
        names = self._metadata.get("thing_classes")
        if names is None and self._coco_api.cats:
            names = [self._coco_api.cats[c]["name"] for c in sorted(self._coco_api.cats)]
        return names

    # -- DatasetEvaluator ------------------------------------------------------------------

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Convert each output's ``instances`` (and keep its ``proposals``) for evaluation.

        Args:
            inputs: dataset dicts with ``image_id`` (and ``height``/``width`` to check masks).
            outputs: model outputs with ``instances`` (``pred_boxes``, ``scores``,
                ``pred_classes``, optionally ``pred_masks``/``pred_keypoints``) and/or
                ``proposals``.
        """
        if len(inputs) != len(outputs):
            raise ValueError(
                f"COCOEvaluator.process: {len(inputs)} inputs but {len(outputs)} outputs"
            )
        for inp, output in zip(inputs, outputs):
            if "image_id" not in inp:
                raise KeyError("COCOEvaluator.process: an input has no 'image_id'")
            prediction: dict[str, Any] = {"image_id": inp["image_id"]}
            if "instances" in output:
                instances = output["instances"].to(self._cpu_device)
                if instances.has("pred_masks") and len(instances) and "height" in inp:
                    expected = (int(inp["height"]), int(inp["width"]))
                    got = tuple(instances.pred_masks.shape[-2:])
                    if got != expected:
                        raise ValueError(
                            f"COCOEvaluator.process: image id {inp['image_id']}: pred_masks are "
                            f"{got[0]}x{got[1]}, expected the image size {expected[0]}x"
                            f"{expected[1]}"
                        )
                prediction["instances"] = instances_to_coco_json(instances, inp["image_id"])
            if "proposals" in output:
                prediction["proposals"] = output["proposals"].to(self._cpu_device)
            if len(prediction) > 1:
                self._predictions.append(prediction)

    def evaluate(self, img_ids: Sequence[int] | None = None) -> OrderedDict | dict:
        """Evaluate everything processed so far.

        Args:
            img_ids: evaluate only these image ids (default: every image in the annotations).

        Returns:
            ``{"bbox": {...}, "segm": {...}, "keypoints": {...}, "box_proposals": {...}}`` as
            predicted; ``{}`` on non-main ranks or without predictions.
        """
        comm = _comm()
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions

        if len(predictions) == 0:
            self._logger.warning("[COCOEvaluator] Did not receive valid predictions.")
            return {}

        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            file_path = os.path.join(self._output_dir, "instances_predictions.pth")
            with PathManager.open(file_path, "wb") as f:
                torch.save(predictions, f)

        self._results: OrderedDict = OrderedDict()
        if "proposals" in predictions[0]:
            self._eval_box_proposals(predictions)
        if "instances" in predictions[0]:
            self._eval_predictions(predictions, img_ids=img_ids)
        return copy.deepcopy(self._results)

    def evaluate_results(
        self, coco_results: str | list[dict], img_ids: Sequence[int] | None = None
    ) -> OrderedDict:
        """Evaluate a COCO results file (or its list of records) without running a model.

        Args:
            coco_results: path of a ``coco_instances_results.json`` or its records, with
                dataset category ids.
            img_ids: evaluate only these image ids.

        Returns:
            ``{task: {metric: value}}`` for the tasks present in the records (or ``tasks``).
        """
        if isinstance(coco_results, (str, os.PathLike)):
            with PathManager.open(os.fspath(coco_results), "r") as f:
                coco_results = json.load(f)
        if not isinstance(coco_results, list):
            raise TypeError(
                "COCOEvaluator.evaluate_results: expected a list of result records, got "
                f"{type(coco_results).__name__}"
            )
        self._results = OrderedDict()
        self._evaluate_coco_results(coco_results, img_ids)
        return copy.deepcopy(self._results)

    @property
    def coco_evals(self) -> dict[str, COCOeval]:
        """The COCOeval object of each evaluated task (for confusion tables and plots)."""
        return self._coco_evals

    @property
    def coco_api(self) -> COCO:
        """The ground-truth ``COCO`` object."""
        return self._coco_api

    # -- internals -------------------------------------------------------------------------

    def _tasks_from_predictions(self, predictions: list[dict]) -> list[str]:
        tasks = {"bbox"}
        for pred in predictions:
            if "segmentation" in pred:
                tasks.add("segm")
            if "keypoints" in pred:
                tasks.add("keypoints")
        return sorted(tasks)

    def _eval_predictions(self, predictions: list[dict], img_ids=None) -> None:
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        mapping = self._id_mapping()
        if mapping is not None:
            contiguous = list(mapping.values())
            num_classes = len(contiguous)
            if sorted(contiguous) != list(range(num_classes)):
                raise ValueError(
                    f"COCOEvaluator: thing_dataset_id_to_contiguous_id of "
                    f"'{self._dataset_name}' must map onto 0..{num_classes - 1}"
                )
            reverse = {v: k for k, v in mapping.items()}
            for i, result in enumerate(coco_results):
                cid = result["category_id"]
                if cid not in reverse:
                    raise ValueError(
                        f"COCOEvaluator: prediction {i} (image id {result['image_id']}) has "
                        f"category {cid}, but the dataset has {num_classes} classes"
                    )
                result["category_id"] = reverse[cid]
        self._evaluate_coco_results(coco_results, img_ids)

    def _evaluate_coco_results(self, coco_results: list[dict], img_ids=None) -> None:
        validate_coco_results(coco_results, self._coco_api, box_dims=self._box_dims)
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            file_path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info("Saving results to %s", file_path)
            with PathManager.open(file_path, "w") as f:
                f.write(json.dumps(coco_results))
                f.flush()
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        self._logger.info(
            "Evaluating predictions with %s COCO API...",
            "unofficial (fast)" if self._use_fast_impl else "official",
        )
        for task in sorted(tasks):
            coco_eval = (
                self._run_coco_eval(coco_results, task, img_ids)
                if len(coco_results) > 0
                else None  # pycocotools does not handle empty results
            )
            if coco_eval is not None:
                self._coco_evals[task] = coco_eval
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._class_names()
            )

    def _run_coco_eval(self, coco_results: list[dict], task: str, img_ids) -> COCOeval:
        """Run COCOeval for one task (subclasses change the IoU, e.g. rotated boxes)."""
        return _evaluate_predictions_on_coco(
            self._coco_api,
            coco_results,
            task,
            kpt_oks_sigmas=self._kpt_oks_sigmas,
            use_fast_impl=self._use_fast_impl,
            img_ids=img_ids,
            max_dets_per_image=self._max_dets_per_image,
        )

    def _eval_box_proposals(self, predictions: list[dict]) -> None:
        if self._output_dir:
            # proposals are saved in XYXY_ABS mode, as Detectron2 does
            proposal_data = {
                "boxes": [p["proposals"].proposal_boxes.tensor.numpy() for p in predictions],
                "objectness_logits": [
                    p["proposals"].objectness_logits.numpy() for p in predictions
                ],
                "ids": [p["image_id"] for p in predictions],
                "bbox_mode": BoxMode.XYXY_ABS.value,
            }
            with PathManager.open(os.path.join(self._output_dir, "box_proposals.pkl"), "wb") as f:
                pickle.dump(proposal_data, f)
        if not self._do_evaluation:
            return
        res = {}
        for limit in (100, 1000):
            for area, suffix in (("all", ""), ("small", "s"), ("medium", "m"), ("large", "l")):
                stats = _evaluate_box_proposals(predictions, self._coco_api, area=area, limit=limit)
                res[f"AR{suffix}@{limit}"] = float(stats["ar"].item() * 100)
        self._logger.info("Proposal metrics: \n%s", _table(list(res.items())))
        self._results["box_proposals"] = res

    def _derive_coco_results(
        self, coco_eval: COCOeval | None, iou_type: str, class_names: list[str] | None = None
    ) -> dict:
        """The standard metrics (and per-category AP) in percent, NaN where undefined."""
        metrics = _METRICS[iou_type]
        if coco_eval is None:
            self._logger.warning("No predictions from the model!")
            return {metric: float("nan") for metric in metrics}
        results = {
            metric: float(coco_eval.stats[idx] * 100 if coco_eval.stats[idx] >= 0 else "nan")
            for idx, metric in enumerate(metrics)
        }
        self._logger.info(
            "Evaluation results for %s: \n%s", iou_type, _table(list(results.items()))
        )
        if not np.isfinite(sum(results.values())):
            self._logger.info("Some metrics cannot be computed and is shown as NaN.")
        if class_names is None or len(class_names) <= 1:
            return results
        precisions = coco_eval.eval["precision"]  # (T, R, K, A, M)
        if len(class_names) != precisions.shape[2]:
            raise ValueError(
                f"COCOEvaluator: {len(class_names)} class names but the evaluation has "
                f"{precisions.shape[2]} categories"
            )
        per_category = []
        for idx, name in enumerate(class_names):
            # area range 0 ("all"), the largest max-detections limit
            precision = precisions[:, :, idx, 0, -1]
            precision = precision[precision > -1]
            ap = np.mean(precision) if precision.size else float("nan")
            per_category.append((f"{name}", float(ap * 100)))
        self._logger.info("Per-category %s AP: \n%s", iou_type, _table(per_category, columns=6))
        results.update({"AP-" + name: ap for name, ap in per_category})
        return results


def _table(items: list[tuple[str, float]], columns: int = 6) -> str:
    """A small pipe table of (name, value) pairs, ``columns // 2`` pairs per row."""
    from tabulate import tabulate

    pairs = max(1, columns // 2)
    flat = list(itertools.chain(*[(k, f"{v:.3f}") for k, v in items]))
    rows = [flat[i : i + 2 * pairs] for i in range(0, len(flat), 2 * pairs)]
    headers = ["name", "value"] * min(pairs, max(1, len(items)))
    return tabulate(rows, tablefmt="pipe", headers=headers, numalign="left")


def instances_to_coco_json(instances: Instances, img_id: int) -> list[dict]:
    """Dump an ``Instances`` object to COCO results records.

    Args:
        instances: predictions for one image: ``pred_boxes`` (Boxes, XYXY absolute),
            ``scores`` (Tensor[N]), ``pred_classes`` (Tensor[N] int, contiguous ids) and
            optionally ``pred_masks`` (Tensor[N, H, W] bool/uint8) and ``pred_keypoints``
            (Tensor[N, K, 3]: x, y, score with pixel-corner coordinates).
        img_id: the image id.

    Returns:
        One dict per instance: ``image_id``, ``category_id`` (contiguous), ``bbox`` (XYWH),
        ``score``, and ``segmentation`` (RLE with str counts) / ``keypoints`` (flat list, -0.5
        pixel shift to COCO's pixel-index convention) when present.
    """
    num_instance = len(instances)
    if num_instance == 0:
        return []
    boxes = instances.pred_boxes.tensor.numpy()
    boxes = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS).tolist()
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()

    rles = None
    if instances.has("pred_masks"):
        masks = instances.pred_masks
        if isinstance(masks, torch.Tensor):
            masks = masks.numpy()
        else:  # e.g. BitMasks
            masks = masks.tensor.numpy()
        # one call encodes all masks of the image: (H, W, N) in Fortran order
        rles = mask_util.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)).astype(np.uint8)))
        for rle in rles:
            rle["counts"] = rle["counts"].decode("utf-8")  # json cannot hold bytes

    keypoints = None
    if instances.has("pred_keypoints"):
        keypoints = instances.pred_keypoints
        if not isinstance(keypoints, torch.Tensor):
            keypoints = keypoints.tensor
        keypoints = keypoints.clone()
        # Predictions are continuous coordinates, COCO annotations pixel indices: the inverse of
        # the +0.5 applied when loading.
        keypoints[:, :, :2] -= 0.5
        keypoints = keypoints.flatten(1).tolist()

    results = []
    for k in range(num_instance):
        result = {
            "image_id": img_id,
            "category_id": classes[k],
            "bbox": boxes[k],
            "score": scores[k],
        }
        if rles is not None:
            result["segmentation"] = rles[k]
        if keypoints is not None:
            result["keypoints"] = keypoints[k]
        results.append(result)
    return results


def _evaluate_box_proposals(
    dataset_predictions: list[dict],
    coco_api: COCO,
    thresholds: torch.Tensor | None = None,
    area: str = "all",
    limit: int | None = None,
) -> dict:
    """Box proposal recall (Detectron2's / Fast R-CNN's definition, non-crowd ground truth)."""
    areas = {"all": 0, "small": 1, "medium": 2, "large": 3, "96-128": 4, "128-256": 5,
             "256-512": 6, "512-inf": 7}  # fmt: skip
    area_ranges = [
        [0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2],
        [96**2, 128**2], [128**2, 256**2], [256**2, 512**2], [512**2, 1e5**2],
    ]  # fmt: skip
    if area not in areas:
        raise ValueError(f"_evaluate_box_proposals: unknown area range {area!r}")
    area_range = area_ranges[areas[area]]
    gt_overlaps = []
    num_pos = 0
    for prediction_dict in dataset_predictions:
        predictions = prediction_dict["proposals"]
        inds = predictions.objectness_logits.sort(descending=True)[1]
        predictions = predictions[inds]
        anno = coco_api.loadAnns(coco_api.getAnnIds(imgIds=prediction_dict["image_id"]))
        anno = [obj for obj in anno if obj["iscrowd"] == 0]
        gt_boxes = torch.as_tensor(
            [BoxMode.convert(obj["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for obj in anno],
            dtype=torch.float32,
        ).reshape(-1, 4)
        gt_areas = torch.as_tensor([obj["area"] for obj in anno], dtype=torch.float32)
        if len(gt_boxes) == 0 or len(predictions) == 0:
            continue
        valid = (gt_areas >= area_range[0]) & (gt_areas <= area_range[1])
        gt_boxes = Boxes(gt_boxes[valid])
        num_pos += len(gt_boxes)
        if len(gt_boxes) == 0:
            continue
        if limit is not None and len(predictions) > limit:
            predictions = predictions[:limit]
        overlaps = pairwise_iou(predictions.proposal_boxes, gt_boxes)
        covered = torch.zeros(len(gt_boxes))
        # greedy one-to-one assignment: repeatedly take the best remaining (proposal, gt) pair
        for j in range(min(len(predictions), len(gt_boxes))):
            max_overlaps, argmax_overlaps = overlaps.max(dim=0)
            gt_ovr, gt_ind = max_overlaps.max(dim=0)
            box_ind = argmax_overlaps[gt_ind]
            covered[j] = overlaps[box_ind, gt_ind]
            overlaps[box_ind, :] = -1
            overlaps[:, gt_ind] = -1
        gt_overlaps.append(covered)
    gt_overlaps = torch.sort(torch.cat(gt_overlaps) if gt_overlaps else torch.zeros(0))[0]
    if thresholds is None:
        thresholds = torch.arange(0.5, 0.95 + 1e-5, 0.05, dtype=torch.float32)
    recalls = (gt_overlaps[None, :] >= thresholds[:, None]).float().sum(1) / float(max(num_pos, 1))
    if num_pos == 0:
        recalls = torch.full_like(thresholds, float("nan"))
    return {
        "ar": recalls.mean(),
        "recalls": recalls,
        "thresholds": thresholds,
        "gt_overlaps": gt_overlaps,
        "num_pos": num_pos,
    }


class _MaxDetsSummary:
    """``summarize`` with AP statistics at the custom ``params.maxDets[2]`` instead of 100."""

    def summarize(self) -> None:
        p = self.params

        def _summarize(ap: int = 1, iou_thr=None, area_rng: str = "all", max_dets: int = 100):
            aind = [i for i, a in enumerate(p.areaRngLbl) if a == area_rng]
            mind = [i for i, m in enumerate(p.maxDets) if m == max_dets]
            if ap == 1:
                s = self.eval["precision"]  # (T, R, K, A, M)
                if iou_thr is not None:
                    s = s[np.where(iou_thr == p.iouThrs)[0]]
                s = s[:, :, :, aind, mind]
            else:
                s = self.eval["recall"]  # (T, K, A, M)
                if iou_thr is not None:
                    s = s[np.where(iou_thr == p.iouThrs)[0]]
                s = s[:, :, aind, mind]
            mean_s = -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])
            print(
                f" {'Average Precision' if ap else 'Average Recall':<18} "
                f"{'(AP)' if ap else '(AR)'} @[ IoU={iou_thr or 'all':<9} | area={area_rng:>6s} "
                f"| maxDets={max_dets:>3d} ] = {mean_s:0.3f}"
            )
            return mean_s

        if not self.eval:
            raise RuntimeError("COCOevalMaxDets.summarize: call accumulate() first")
        if p.iouType == "keypoints":
            return super().summarize()
        m0, m1, m2 = p.maxDets[0], p.maxDets[1], p.maxDets[2]
        stats = np.zeros((12,))
        stats[0] = _summarize(1, max_dets=m2)
        stats[1] = _summarize(1, iou_thr=0.5, max_dets=m2)
        stats[2] = _summarize(1, iou_thr=0.75, max_dets=m2)
        stats[3] = _summarize(1, area_rng="small", max_dets=m2)
        stats[4] = _summarize(1, area_rng="medium", max_dets=m2)
        stats[5] = _summarize(1, area_rng="large", max_dets=m2)
        stats[6] = _summarize(0, max_dets=m0)
        stats[7] = _summarize(0, max_dets=m1)
        stats[8] = _summarize(0, max_dets=m2)
        stats[9] = _summarize(0, area_rng="small", max_dets=m2)
        stats[10] = _summarize(0, area_rng="medium", max_dets=m2)
        stats[11] = _summarize(0, area_rng="large", max_dets=m2)
        self.stats = stats


class COCOevalMaxDets(_MaxDetsSummary, COCOeval_opt):
    """COCOeval whose AP statistics use the custom ``params.maxDets[2]`` instead of 100."""


class _COCOevalMaxDetsOfficial(_MaxDetsSummary, COCOeval):
    """:class:`COCOevalMaxDets` on pycocotools' own evaluate/accumulate."""


def load_coco_results(coco_gt: COCO, coco_results: list[dict]) -> COCO:
    """``coco_gt.loadRes(coco_results)``, with mask areas and boxes computed in one batch.

    pycocotools' ``loadRes`` calls ``area``/``toBbox`` once per mask result; this does the same
    computation for all of them at once and gives the same ``COCO`` object (same fields and
    values). Other result kinds go through ``loadRes``. The records are modified in place, as
    ``loadRes`` does.
    """
    first = coco_results[0] if coco_results else {}
    is_mask = "segmentation" in first and not ("bbox" in first and first["bbox"] != [])
    if not is_mask or "caption" in first:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(coco_results)
    res = COCO()
    res.dataset["images"] = list(coco_gt.dataset["images"])
    res.dataset["categories"] = copy.deepcopy(coco_gt.dataset["categories"])
    segms = [r["segmentation"] for r in coco_results]
    # (N,) uint32, as area() of each; in chunks, as pycocotools' area() overflows a uint8
    # with numpy 2 for more than 255 objects
    areas = np.concatenate([mask_util.area(segms[i : i + 255]) for i in range(0, len(segms), 255)])
    boxes = mask_util.toBbox(segms)  # (N, 4) float64
    for i, ann in enumerate(coco_results):
        ann["area"] = areas[i]
        if "bbox" not in ann:
            ann["bbox"] = boxes[i]
        ann["id"] = i + 1
        ann["iscrowd"] = 0
    res.dataset["annotations"] = coco_results
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def _evaluate_predictions_on_coco(
    coco_gt: COCO,
    coco_results: list[dict],
    iou_type: str,
    kpt_oks_sigmas: Sequence[float] | None = None,
    use_fast_impl: bool = True,
    img_ids: Sequence[int] | None = None,
    max_dets_per_image: list[int] | None = None,
) -> COCOeval:
    """Run COCOeval for one task on non-empty results (dataset category ids)."""
    # pycocotools' loadRes adds fields ("area", "id", a box polygon as "segmentation") to the
    # records it gets: give it shallow copies so the caller's records stay as they were.
    coco_results = [dict(c) for c in coco_results]
    if iou_type == "segm":
        # With a "bbox" field pycocotools takes the box area as the instance area, which
        # changes the small/medium/large split; mask AP must use the mask area.
        for c in coco_results:
            c.pop("bbox", None)
    if iou_type == "segm" and not all("segmentation" in c for c in coco_results):
        raise ValueError("COCO results: task 'segm' needs a 'segmentation' in every record")
    if iou_type == "keypoints" and not all("keypoints" in c for c in coco_results):
        raise ValueError("COCO results: task 'keypoints' needs 'keypoints' in every record")
    coco_dt = load_coco_results(coco_gt, coco_results)
    coco_eval = (COCOeval_opt if use_fast_impl else COCOeval)(coco_gt, coco_dt, iou_type)
    if max_dets_per_image is None:
        max_dets_per_image = [1, 10, 100]
    else:
        if len(max_dets_per_image) < 3:
            raise ValueError("COCOeval requires max_dets_per_image to have length at least 3")
        if max_dets_per_image[2] != 100:
            cls = COCOevalMaxDets if use_fast_impl else _COCOevalMaxDetsOfficial
            coco_eval = cls(coco_gt, coco_dt, iou_type)
    if iou_type != "keypoints":
        coco_eval.params.maxDets = list(max_dets_per_image)
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    if iou_type == "keypoints":
        if kpt_oks_sigmas:
            coco_eval.params.kpt_oks_sigmas = np.array(kpt_oks_sigmas)
        # pycocotools needs every detection and ground truth to carry all keypoints
        num_keypoints_dt = len(coco_results[0]["keypoints"]) // 3
        num_keypoints_gt = len(next(iter(coco_gt.anns.values()))["keypoints"]) // 3
        num_keypoints_oks = len(coco_eval.params.kpt_oks_sigmas)
        if not (num_keypoints_oks == num_keypoints_dt == num_keypoints_gt):
            raise ValueError(
                f"[COCOEvaluator] Prediction contain {num_keypoints_dt} keypoints. Ground truth "
                f"contains {num_keypoints_gt} keypoints. The length of cfg.TEST.KEYPOINT_OKS_"
                f"SIGMAS is {num_keypoints_oks}. They have to agree with each other. For meaning "
                "of OKS, please refer to http://cocodataset.org/#keypoints-eval."
            )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.info("COCOeval (%s):\n%s", iou_type, out.getvalue().rstrip())
    return coco_eval

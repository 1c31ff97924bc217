"""Cityscapes instance (AP) and semantic (IoU) evaluation through the official
``cityscapesscripts`` package (optional: ``pip install cityscapesscripts``)."""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from collections import OrderedDict
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from torchdet.data import MetadataCatalog
from torchdet.utils.file_io import PathManager

from .evaluator import DatasetEvaluator, _comm

__all__ = ["CityscapesInstanceEvaluator", "CityscapesSemSegEvaluator"]

logger = logging.getLogger(__name__)


def _import(module: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"Cityscapes evaluation needs the 'cityscapesscripts' package ({e}). Install it with "
            "`pip install cityscapesscripts`."
        ) from e


class CityscapesEvaluator(DatasetEvaluator):
    """Base class: predictions are written to a temporary folder shared by all ranks, then
    evaluated by the official scripts on rank 0 (single machine only)."""

    def __init__(self, dataset_name: str):
        """
        Args:
            dataset_name: a registered Cityscapes dataset (metadata with ``gt_dir`` and
                ``thing_classes`` / ``stuff_classes``).
        """
        self._metadata = MetadataCatalog.get(dataset_name)
        if self._metadata.get("gt_dir") is None:
            raise KeyError(f"CityscapesEvaluator: metadata of '{dataset_name}' has no gt_dir")
        self._cpu_device = torch.device("cpu")
        self._working_dir: tempfile.TemporaryDirectory | None = None

    def reset(self) -> None:
        comm = _comm()
        self._working_dir = tempfile.TemporaryDirectory(prefix="cityscapes_eval_")
        self._temp_dir = comm.all_gather(self._working_dir.name)[0]
        if self._temp_dir != self._working_dir.name:
            self._working_dir.cleanup()
        logger.info("Writing cityscapes results to temporary directory %s ...", self._temp_dir)

    def _set_args(self, cityscapes_eval: ModuleType) -> None:
        cityscapes_eval.args.predictionPath = os.path.abspath(self._temp_dir)
        cityscapes_eval.args.predictionWalk = None
        cityscapes_eval.args.JSONOutput = False
        cityscapes_eval.args.colorized = False

    def _gt_files(self, pattern: str) -> list[str]:
        gt_dir = PathManager.get_local_path(os.fspath(self._metadata.gt_dir))
        files = glob.glob(os.path.join(gt_dir, "*", pattern))
        if not files:
            raise FileNotFoundError(
                f"CityscapesEvaluator: no ground-truth files {pattern} under {gt_dir}"
            )
        return files


class CityscapesInstanceEvaluator(CityscapesEvaluator):
    """Instance segmentation AP / AP50 with the official Cityscapes script."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        name2label = _import("cityscapesscripts.helpers.labels").name2label
        for inp, output in zip(inputs, outputs):
            basename = os.path.splitext(os.path.basename(inp["file_name"]))[0]
            pred_txt = os.path.join(self._temp_dir, basename + "_pred.txt")
            # the script needs a prediction file for every ground-truth image
            with open(pred_txt, "w") as fout:
                if "instances" not in output:
                    continue
                inst = output["instances"].to(self._cpu_device)
                masks = inst.pred_masks.numpy().astype(np.uint8)
                for i, (cls, score) in enumerate(
                    zip(inst.pred_classes.tolist(), inst.scores.tolist())
                ):
                    cls_name = self._metadata.thing_classes[cls]
                    png = os.path.join(self._temp_dir, f"{basename}_{i}_{cls_name}.png")
                    Image.fromarray(masks[i] * 255).save(png)
                    fout.write(f"{os.path.basename(png)} {name2label[cls_name].id} {score}\n")

    def evaluate(self) -> OrderedDict | None:
        """Returns ``{"segm": {"AP", "AP50"}}`` (percent) on rank 0."""
        comm = _comm()
        comm.synchronize()
        if comm.get_rank() > 0:
            return None
        cityscapes_eval = _import("cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling")
        self._set_args(cityscapes_eval)
        cityscapes_eval.args.gtInstancesFile = os.path.join(self._temp_dir, "gtInstances.json")
        gt_list = self._gt_files("*_gtFine_instanceIds.png")
        pred_list = [cityscapes_eval.getPrediction(gt, cityscapes_eval.args) for gt in gt_list]
        results = cityscapes_eval.evaluateImgLists(pred_list, gt_list, cityscapes_eval.args)
        results = results["averages"]
        ret = OrderedDict(
            {"segm": {"AP": results["allAp"] * 100, "AP50": results["allAp50%"] * 100}}
        )
        if self._working_dir is not None:
            self._working_dir.cleanup()
        return ret


class CityscapesSemSegEvaluator(CityscapesEvaluator):
    """Semantic segmentation IoU / iIoU (classes and categories) with the official script."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        train_id_to_label = _import("cityscapesscripts.helpers.labels").trainId2label
        # train id -> label id lookup (255 for ignored train ids)
        lut = np.full(256, 255, dtype=np.uint8)
        for train_id, label in train_id_to_label.items():
            if not label.ignoreInEval and 0 <= train_id < 255:
                lut[train_id] = label.id
        for inp, output in zip(inputs, outputs):
            basename = os.path.splitext(os.path.basename(inp["file_name"]))[0]
            pred = output["sem_seg"].argmax(dim=0).to(self._cpu_device).numpy()
            pred = lut[np.clip(pred, 0, 255)]
            Image.fromarray(pred).save(os.path.join(self._temp_dir, basename + "_pred.png"))

    def evaluate(self) -> OrderedDict | None:
        """Returns ``{"sem_seg": {"IoU", "iIoU", "IoU_sup", "iIoU_sup"}}`` on rank 0."""
        comm = _comm()
        comm.synchronize()
        if comm.get_rank() > 0:
            return None
        cityscapes_eval = _import("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
        self._set_args(cityscapes_eval)
        gt_list = self._gt_files("*_gtFine_labelIds.png")
        pred_list = [cityscapes_eval.getPrediction(cityscapes_eval.args, gt) for gt in gt_list]
        results = cityscapes_eval.evaluateImgLists(pred_list, gt_list, cityscapes_eval.args)
        ret = OrderedDict(
            {
                "sem_seg": {
                    "IoU": 100.0 * results["averageScoreClasses"],
                    "iIoU": 100.0 * results["averageScoreInstClasses"],
                    "IoU_sup": 100.0 * results["averageScoreCategories"],
                    "iIoU_sup": 100.0 * results["averageScoreInstCategories"],
                }
            }
        )
        if self._working_dir is not None:
            self._working_dir.cleanup()
        return ret

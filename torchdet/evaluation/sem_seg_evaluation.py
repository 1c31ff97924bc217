"""Semantic segmentation metrics: mIoU, fwIoU, mACC, pACC, per-class IoU/ACC and boundary IoU."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image

from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.utils.file_io import PathManager

from .evaluator import DatasetEvaluator, _comm

__all__ = ["SemSegEvaluator", "load_image_into_numpy_array", "mask_to_boundary"]

logger = logging.getLogger(__name__)


def load_image_into_numpy_array(
    filename: str, copy: bool = False, dtype: np.dtype | type | None = None
) -> np.ndarray:
    """Read an image file (e.g. a label PNG) into an array of the given dtype."""
    with PathManager.open(filename, "rb") as f:
        array = np.asarray(Image.open(f), dtype=dtype)
    return array.copy() if copy else array


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The inner boundary band of a label map (Boundary IoU, Cheng et al. 2021).

    The map is padded with one row/column of zeros and eroded (a 3x3 minimum filter) ``d``
    times, ``d = max(1, round(dilation_ratio * image diagonal))``; the result is
    ``mask - eroded``. On a multi-label map this is Detectron2's definition: the value is the
    drop in label towards the lowest label within ``d`` pixels, not a label.

    Args:
        mask (ndarray[H, W] uint8): label map.
        dilation_ratio: band width relative to the image diagonal.

    Returns:
        ndarray[H, W] uint8.
    """
    import cv2

    if mask.ndim != 2:
        raise ValueError(f"mask_to_boundary: expected a 2-d map, got shape {mask.shape}")
    h, w = mask.shape
    dilation = max(1, int(round(dilation_ratio * np.sqrt(h**2 + w**2))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), dtype=np.uint8), iterations=dilation)[1:-1, 1:-1]
    return mask - eroded


class SemSegEvaluator(DatasetEvaluator):
    """Evaluate semantic segmentation: a confusion matrix over ``num_classes`` + 1 (ignored)."""

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        sem_seg_loading_fn: Callable[..., np.ndarray] = load_image_into_numpy_array,
        num_classes: int | None = None,
        ignore_label: int | None = None,
    ):
        """
        Args:
            dataset_name: a registered dataset whose dicts have ``sem_seg_file_name``; its
                metadata gives ``stuff_classes`` and ``ignore_label``.
            distributed: gather from all ranks and evaluate on the main one.
            output_dir: where ``sem_seg_predictions.json`` and ``sem_seg_evaluation.pth`` go.
            sem_seg_loading_fn: reads a ground-truth file: ``fn(path, dtype=...)``.
            num_classes: deprecated, checked against the metadata.
            ignore_label: overrides the metadata's ``ignore_label``.
        """
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._cpu_device = torch.device("cpu")
        self.input_file_to_gt_file = {}
        for i, rec in enumerate(DatasetCatalog.get(dataset_name)):
            if "sem_seg_file_name" not in rec:
                raise KeyError(
                    f"SemSegEvaluator: record {i} ({rec.get('file_name')}) of dataset "
                    f"'{dataset_name}' has no 'sem_seg_file_name'"
                )
            self.input_file_to_gt_file[rec["file_name"]] = rec["sem_seg_file_name"]

        meta = MetadataCatalog.get(dataset_name)
        c2d = meta.get("stuff_dataset_id_to_contiguous_id")
        self._contiguous_id_to_dataset_id = {v: k for k, v in c2d.items()} if c2d else None
        if meta.get("stuff_classes") is None:
            raise KeyError(f"SemSegEvaluator: metadata of '{dataset_name}' has no stuff_classes")
        self._class_names = list(meta.stuff_classes)
        self.sem_seg_loading_fn = sem_seg_loading_fn
        self._num_classes = len(self._class_names)
        if num_classes is not None and num_classes != self._num_classes:
            raise ValueError(
                f"SemSegEvaluator: num_classes={num_classes} but '{dataset_name}' has "
                f"{self._num_classes} stuff_classes"
            )
        if ignore_label is None:
            ignore_label = meta.get("ignore_label")
        if ignore_label is None:
            raise KeyError(
                f"SemSegEvaluator: metadata of '{dataset_name}' has no ignore_label; pass one"
            )
        self._ignore_label = int(ignore_label)
        # boundaries are computed on uint8 maps (cv2.erode)
        self._compute_boundary_iou = self._num_classes < np.iinfo(np.uint8).max
        if not self._compute_boundary_iou:
            logger.warning(
                "SemSegEvaluator: %d classes is too many for Boundary IoU (max 254); skipped",
                self._num_classes,
            )
        self.reset()

    def reset(self) -> None:
        n = self._num_classes + 1
        self._conf_matrix = np.zeros((n, n), dtype=np.int64)  # [pred, gt]
        self._b_conf_matrix = np.zeros((n, n), dtype=np.int64)
        self._predictions: list[dict] = []

    def _bincount(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        n = self._num_classes + 1
        return np.bincount(n * pred.reshape(-1) + gt.reshape(-1), minlength=n * n).reshape(n, n)

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Add one batch.

        Args:
            inputs: dataset dicts with ``file_name``.
            outputs: dicts with ``sem_seg`` (Tensor[C, H, W] scores, C = number of classes).
        """
        for inp, output in zip(inputs, outputs):
            file_name = inp.get("file_name")
            if file_name not in self.input_file_to_gt_file:
                raise KeyError(
                    f"SemSegEvaluator: '{file_name}' is not an image of '{self._dataset_name}'"
                )
            scores = output["sem_seg"]
            if scores.ndim != 3 or scores.shape[0] != self._num_classes:
                raise ValueError(
                    f"SemSegEvaluator: sem_seg of '{file_name}' has shape {tuple(scores.shape)}, "
                    f"expected ({self._num_classes}, H, W)"
                )
            pred = scores.argmax(dim=0).to(self._cpu_device).numpy().astype(np.int64)
            gt = self.sem_seg_loading_fn(self.input_file_to_gt_file[file_name], dtype=np.int64)
            gt = np.array(gt, dtype=np.int64)  # writable copy (a loader may return a view)
            if gt.shape != pred.shape:
                raise ValueError(
                    f"SemSegEvaluator: prediction for '{file_name}' is {pred.shape[0]}x"
                    f"{pred.shape[1]}, ground truth is {gt.shape[0]}x{gt.shape[1]}"
                )
            gt[gt == self._ignore_label] = self._num_classes
            bad = (gt < 0) | (gt > self._num_classes)
            if bad.any():
                raise ValueError(
                    f"SemSegEvaluator: ground truth of '{file_name}' has label "
                    f"{int(gt[bad][0])}, outside 0..{self._num_classes - 1} and the ignore label "
                    f"{self._ignore_label}"
                )
            self._conf_matrix += self._bincount(pred, gt)
            if self._compute_boundary_iou:
                b_gt = mask_to_boundary(gt.astype(np.uint8)).astype(np.int64)
                b_pred = mask_to_boundary(pred.astype(np.uint8)).astype(np.int64)
                self._b_conf_matrix += self._bincount(b_pred, b_gt)
            self._predictions.extend(self.encode_json_sem_seg(pred, file_name))

    def evaluate(self) -> OrderedDict | None:
        """Compute the metrics (percent); per-class values are NaN for absent classes.

        Returns:
            ``{"sem_seg": {"mIoU", "fwIoU", "IoU-<c>", "BoundaryIoU-<c>",
            "min(IoU, B-Iou)-<c>", "mACC", "pACC", "ACC-<c>"}}``.
        """
        if self._distributed:
            comm = _comm()
            comm.synchronize()
            conf_list = comm.all_gather(self._conf_matrix)
            b_conf_list = comm.all_gather(self._b_conf_matrix)
            predictions = list(itertools.chain(*comm.all_gather(self._predictions)))
            if not comm.is_main_process():
                return None
            self._conf_matrix = np.sum(conf_list, axis=0)
            self._b_conf_matrix = np.sum(b_conf_list, axis=0)
            self._predictions = predictions

        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            path = os.path.join(self._output_dir, "sem_seg_predictions.json")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(self._predictions))

        n = self._num_classes
        acc = np.full(n, np.nan, dtype=np.float64)
        iou = np.full(n, np.nan, dtype=np.float64)
        tp = self._conf_matrix.diagonal()[:-1].astype(np.float64)
        pos_gt = np.sum(self._conf_matrix[:-1, :-1], axis=0).astype(np.float64)
        class_weights = pos_gt / np.sum(pos_gt)
        pos_pred = np.sum(self._conf_matrix[:-1, :-1], axis=1).astype(np.float64)
        acc_valid = pos_gt > 0
        acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
        union = pos_gt + pos_pred - tp
        iou_valid = np.logical_and(acc_valid, union > 0)
        iou[iou_valid] = tp[iou_valid] / union[iou_valid]
        macc = np.sum(acc[acc_valid]) / np.sum(acc_valid)
        miou = np.sum(iou[iou_valid]) / np.sum(iou_valid)
        fiou = np.sum(iou[iou_valid] * class_weights[iou_valid])
        pacc = np.sum(tp) / np.sum(pos_gt)

        if self._compute_boundary_iou:
            b_iou = np.full(n, np.nan, dtype=np.float64)
            b_tp = self._b_conf_matrix.diagonal()[:-1].astype(np.float64)
            b_pos_gt = np.sum(self._b_conf_matrix[:-1, :-1], axis=0).astype(np.float64)
            b_pos_pred = np.sum(self._b_conf_matrix[:-1, :-1], axis=1).astype(np.float64)
            b_union = b_pos_gt + b_pos_pred - b_tp
            b_valid = b_union > 0
            b_iou[b_valid] = b_tp[b_valid] / b_union[b_valid]

        res: dict[str, float] = {"mIoU": 100 * miou, "fwIoU": 100 * fiou}
        for i, name in enumerate(self._class_names):
            res[f"IoU-{name}"] = 100 * iou[i]
            if self._compute_boundary_iou:
                res[f"BoundaryIoU-{name}"] = 100 * b_iou[i]
                res[f"min(IoU, B-Iou)-{name}"] = 100 * min(iou[i], b_iou[i])
        res["mACC"] = 100 * macc
        res["pACC"] = 100 * pacc
        for i, name in enumerate(self._class_names):
            res[f"ACC-{name}"] = 100 * acc[i]
        res = {k: float(v) for k, v in res.items()}

        if self._output_dir:
            path = os.path.join(self._output_dir, "sem_seg_evaluation.pth")
            with PathManager.open(path, "wb") as f:
                torch.save(res, f)
        results = OrderedDict({"sem_seg": res})
        logger.info(results)
        return results

    def encode_json_sem_seg(self, sem_seg: np.ndarray, input_file_name: str) -> list[dict]:
        """One RLE record per label present: ``file_name``, ``category_id`` (dataset id),
        ``segmentation``."""
        labels = np.unique(sem_seg)
        if len(labels) == 0:
            return []
        if self._contiguous_id_to_dataset_id is not None:
            missing = [int(x) for x in labels if int(x) not in self._contiguous_id_to_dataset_id]
            if missing:
                raise ValueError(
                    f"SemSegEvaluator: labels {missing} predicted for '{input_file_name}' are not "
                    f"in the metadata of '{self._dataset_name}'"
                )
            ids = [self._contiguous_id_to_dataset_id[int(x)] for x in labels]
        else:
            ids = [int(x) for x in labels]
        masks = np.asfortranarray((sem_seg[:, :, None] == labels[None, None, :]).astype(np.uint8))
        rles = mask_util.encode(masks)
        out = []
        for dataset_id, rle in zip(ids, rles):
            rle["counts"] = rle["counts"].decode("utf-8")
            out.append(
                {"file_name": input_file_name, "category_id": dataset_id, "segmentation": rle}
            )
        return out

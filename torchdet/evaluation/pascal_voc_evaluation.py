"""Pascal VOC detection AP (the official devkit rules, VOC2007 11-point or area metric)."""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import OrderedDict, defaultdict
from functools import cache

import numpy as np
import torch

from torchdet.data import MetadataCatalog
from torchdet.utils.file_io import PathManager

from .evaluator import DatasetEvaluator, _comm

__all__ = ["PascalVOCDetectionEvaluator", "parse_rec", "voc_ap", "voc_eval"]

logger = logging.getLogger(__name__)


class PascalVOCDetectionEvaluator(DatasetEvaluator):
    """Evaluate Pascal VOC style AP (AP50, AP75 and the mean over IoU 0.50:0.95).

    Detections go through the devkit's text format (score to 3 decimals, box to 1 decimal,
    1-based ``xmin``/``ymin``) as in Detectron2, so the numbers match its evaluator. Ground truth
    is read from ``<dirname>/Annotations/<id>.xml``; "difficult" objects neither count nor
    penalise.
    """

    def __init__(self, dataset_name: str):
        """
        Args:
            dataset_name: a dataset registered by ``register_pascal_voc`` (metadata
                ``dirname``, ``split``, ``year`` and ``thing_classes``).
        """
        self._dataset_name = dataset_name
        meta = MetadataCatalog.get(dataset_name)
        for key in ("dirname", "split", "year", "thing_classes"):
            if meta.get(key) is None:
                raise KeyError(
                    f"PascalVOCDetectionEvaluator: metadata of '{dataset_name}' has no '{key}'"
                )
        dirname = os.fspath(meta.dirname)
        annotation_dir = PathManager.get_local_path(os.path.join(dirname, "Annotations/"))
        self._anno_file_template = os.path.join(annotation_dir, "{}.xml")
        self._image_set_path = os.path.join(dirname, "ImageSets", "Main", meta.split + ".txt")
        self._class_names = list(meta.thing_classes)
        if meta.year not in (2007, 2012):
            raise ValueError(
                f"PascalVOCDetectionEvaluator: year must be 2007 or 2012, got {meta.year}"
            )
        self._is_2007 = meta.year == 2007
        self._cpu_device = torch.device("cpu")
        self.reset()

    def reset(self) -> None:
        self._predictions: dict[int, list[str]] = defaultdict(list)  # class id -> devkit lines

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Add detections of one batch (``instances`` with XYXY ``pred_boxes``)."""
        for inp, output in zip(inputs, outputs):
            image_id = inp["image_id"]
            instances = output["instances"].to(self._cpu_device)
            boxes = instances.pred_boxes.tensor.numpy().astype(np.float64)
            boxes[:, :2] += 1  # back to the devkit's 1-based xmin/ymin (inverse of loading)
            for box, score, cls in zip(
                boxes.tolist(), instances.scores.tolist(), instances.pred_classes.tolist()
            ):
                if not 0 <= cls < len(self._class_names):
                    raise ValueError(
                        f"PascalVOCDetectionEvaluator: image {image_id} has a detection of class "
                        f"{cls}; the dataset has {len(self._class_names)} classes"
                    )
                xmin, ymin, xmax, ymax = box
                self._predictions[cls].append(
                    f"{image_id} {score:.3f} {xmin:.1f} {ymin:.1f} {xmax:.1f} {ymax:.1f}"
                )

    def evaluate(self) -> OrderedDict | None:
        """Returns ``{"bbox": {"AP", "AP50", "AP75"}}`` (percent, mean over classes)."""
        comm = _comm()
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        predictions: dict[int, list[str]] = defaultdict(list)
        for per_rank in all_predictions:
            for cls_id, lines in per_rank.items():
                predictions[cls_id].extend(lines)
        logger.info(
            "Evaluating %s using %d metric.", self._dataset_name, 2007 if self._is_2007 else 2012
        )
        _parse_rec_cached.cache_clear()  # annotation files are read once per evaluation
        aps: dict[int, list[float]] = defaultdict(list)  # IoU threshold (percent) -> AP per class
        for cls_id, cls_name in enumerate(self._class_names):
            lines = predictions.get(cls_id, [])
            for thresh in range(50, 100, 5):
                _, _, ap = voc_eval(
                    lines,
                    self._anno_file_template,
                    self._image_set_path,
                    cls_name,
                    ovthresh=thresh / 100.0,
                    use_07_metric=self._is_2007,
                )
                aps[thresh].append(ap * 100)
        m_ap = {iou: float(np.mean(x)) for iou, x in aps.items()}
        return OrderedDict(
            {
                "bbox": {
                    "AP": float(np.mean(list(m_ap.values()))),
                    "AP50": m_ap[50],
                    "AP75": m_ap[75],
                }
            }
        )


@cache
def _parse_rec_cached(filename: str) -> tuple:
    return tuple(parse_rec(filename))


def parse_rec(filename: str) -> list[dict]:
    """Objects of a VOC annotation xml: ``name``, ``pose``, ``truncated``, ``difficult``,
    ``bbox`` (int xmin, ymin, xmax, ymax, 1-based inclusive)."""
    with PathManager.open(filename) as f:
        tree = ET.parse(f)
    objects = []
    for obj in tree.findall("object"):
        try:
            bbox = obj.find("bndbox")
            objects.append(
                {
                    "name": obj.find("name").text,
                    "pose": obj.find("pose").text if obj.find("pose") is not None else None,
                    "truncated": int(obj.find("truncated").text)
                    if obj.find("truncated") is not None
                    else 0,
                    "difficult": int(obj.find("difficult").text)
                    if obj.find("difficult") is not None
                    else 0,
                    "bbox": [
                        int(float(bbox.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")
                    ],
                }
            )
        except (AttributeError, ValueError) as e:
            raise ValueError(f"parse_rec: malformed object in '{filename}': {e}") from None
    return objects


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a recall/precision curve.

    Args:
        rec (ndarray[N]), prec (ndarray[N]): cumulative recall and precision in score order.
        use_07_metric: VOC2007's 11-point interpolation instead of the area under the curve.
    """
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def voc_eval(
    detections: list[str],
    annopath: str,
    imagesetfile: str,
    classname: str,
    ovthresh: float = 0.5,
    use_07_metric: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The devkit's per-class evaluation, vectorised over detections.

    Each detection (in descending score order) takes the ground truth of its image with the
    highest overlap (devkit's +1 pixel areas); above ``ovthresh`` it is a TP if that ground truth
    is not difficult and not yet taken by a higher-scored detection, a FP if taken, and neither
    if difficult; below, a FP.

    Args:
        detections: lines ``"<image id> <score> <xmin> <ymin> <xmax> <ymax>"``.
        annopath: ``"<dir>/{}.xml"`` template of annotation files.
        imagesetfile: the split file listing image ids.
        classname: the class to evaluate.
        ovthresh: IoU threshold.
        use_07_metric: VOC2007 11-point AP.

    Returns:
        recall (ndarray[N]), precision (ndarray[N]), AP.
    """
    with PathManager.open(imagesetfile, "r") as f:
        imagenames = [x.strip() for x in f.readlines()]
    image_index = {name: i for i, name in enumerate(imagenames)}
    gt_img, gt_box, gt_diff = [], [], []
    for i, name in enumerate(imagenames):
        for obj in _parse_rec_cached(annopath.format(name)):
            if obj["name"] == classname:
                gt_img.append(i)
                gt_box.append(obj["bbox"])
                gt_diff.append(bool(obj["difficult"]))
    gt_img = np.asarray(gt_img, dtype=np.int64)
    gt_box = np.asarray(gt_box, dtype=np.float64).reshape(-1, 4)
    gt_diff = np.asarray(gt_diff, dtype=bool)
    npos = int((~gt_diff).sum())

    split = [x.strip().split(" ") for x in detections if x.strip()]
    unknown = [x[0] for x in split if x[0] not in image_index]
    if unknown:
        raise ValueError(
            f"voc_eval: detection on image '{unknown[0]}', which is not in {imagesetfile}"
        )
    confidence = np.array([float(x[1]) for x in split])
    boxes = np.array([[float(z) for z in x[2:]] for x in split]).reshape(-1, 4)
    det_img = np.array([image_index[x[0]] for x in split], dtype=np.int64)
    order = np.argsort(-confidence)  # the devkit's (unstable) sort: same order for ties
    boxes, det_img = boxes[order], det_img[order]
    nd = len(det_img)

    # ground truth of each image, padded to the largest count: (num_images, G, 4)
    n_img = len(imagenames)
    counts = np.bincount(gt_img, minlength=n_img)
    g_max = int(counts.max()) if len(counts) and counts.max() > 0 else 0
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    if nd and g_max:
        slot = np.arange(len(gt_img)) - np.concatenate([[0], np.cumsum(counts)])[gt_img]
        table = np.full((n_img, g_max), -1, dtype=np.int64)
        table[gt_img, slot] = np.arange(len(gt_img))
        cand = table[det_img]  # (nd, G) gt indices, -1 padding
        g = gt_box[np.maximum(cand, 0)]  # (nd, G, 4)
        bb = boxes[:, None, :]
        iw = np.maximum(
            np.minimum(g[..., 2], bb[..., 2]) - np.maximum(g[..., 0], bb[..., 0]) + 1.0, 0.0
        )
        ih = np.maximum(
            np.minimum(g[..., 3], bb[..., 3]) - np.maximum(g[..., 1], bb[..., 1]) + 1.0, 0.0
        )
        inters = iw * ih
        uni = (
            (bb[..., 2] - bb[..., 0] + 1.0) * (bb[..., 3] - bb[..., 1] + 1.0)
            + (g[..., 2] - g[..., 0] + 1.0) * (g[..., 3] - g[..., 1] + 1.0)
            - inters
        )
        overlaps = np.where(cand >= 0, inters / uni, -np.inf)
        jmax = np.argmax(overlaps, axis=1)
        ovmax = overlaps[np.arange(nd), jmax]
        gt_of = cand[np.arange(nd), jmax]
        hit = ovmax > ovthresh
        fp[~hit] = 1.0
        hit_idx = np.flatnonzero(hit & ~gt_diff[np.maximum(gt_of, 0)])
        # the first (highest-scored) detection on a ground truth is the TP, later ones are FPs
        _, first = np.unique(gt_of[hit_idx], return_index=True)
        is_first = np.zeros(len(hit_idx), dtype=bool)
        is_first[first] = True
        tp[hit_idx[is_first]] = 1.0
        fp[hit_idx[~is_first]] = 1.0
    else:
        fp[:] = 1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos) if npos else np.full(nd, np.nan)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, voc_ap(rec, prec, use_07_metric)

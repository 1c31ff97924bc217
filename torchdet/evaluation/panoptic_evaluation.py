"""COCO panoptic quality (PQ, SQ, RQ), computed as panopticapi's ``pq_compute`` does.

The PQ computation is written here with numpy (panopticapi is not on PyPI); it follows
panopticapi's rules exactly:

- segments match when IoU > 0.5 and categories agree; the union leaves out the prediction's
  overlap with VOID (id 0) ground truth; crowd ground truth never matches;
- the ground-truth area is the ``area`` of its ``segments_info`` record, the predicted area is
  counted in the PNG;
- an unmatched prediction counts as a false positive unless more than half of it lies on VOID
  plus the crowd region of its category (the last crowd segment of that category);
- PQ/SQ/RQ are averaged over categories with at least one TP, FP or FN.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import tempfile
from collections import OrderedDict

import numpy as np
from PIL import Image

from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.utils.file_io import PathManager

from .evaluator import DatasetEvaluator, _comm

__all__ = ["COCOPanopticEvaluator", "PQStat", "id2rgb", "pq_compute", "rgb2id"]

logger = logging.getLogger(__name__)

OFFSET = 256 * 256 * 256
VOID = 0


def id2rgb(id_map: np.ndarray) -> np.ndarray:
    """Segment ids (ndarray[H, W] int) -> COCO panoptic colours (ndarray[H, W, 3] uint8)."""
    id_map = np.asarray(id_map).astype(np.int64)
    if (id_map < 0).any() or (id_map >= OFFSET).any():
        raise ValueError("id2rgb: segment ids must be in [0, 256**3)")
    shifts = np.array([0, 8, 16], dtype=np.int64)
    return ((id_map[..., None] >> shifts) & 255).astype(np.uint8)


def rgb2id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic colours (ndarray[H, W, 3]) -> segment ids (ndarray[H, W] uint32)."""
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[-1] != 3:
        raise ValueError(f"rgb2id: expected an (H, W, 3) image, got shape {color.shape}")
    color = color.astype(np.uint32)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


class PQStat:
    """Per-category TP/FP/FN counts and summed IoU of matches."""

    def __init__(self) -> None:
        self.iou: dict[int, float] = {}
        self.tp: dict[int, int] = {}
        self.fp: dict[int, int] = {}
        self.fn: dict[int, int] = {}

    def add(self, cats: np.ndarray, tp=None, fp=None, fn=None, iou=None) -> None:
        """Add per-segment contributions; ``cats`` (ndarray[S] int) gives each one's category."""
        for store, vals in ((self.tp, tp), (self.fp, fp), (self.fn, fn), (self.iou, iou)):
            if vals is None or len(cats) == 0:
                continue
            uniq, inv = np.unique(cats, return_inverse=True)
            sums = np.zeros(len(uniq), dtype=np.float64 if store is self.iou else np.int64)
            np.add.at(sums, inv, vals)
            for c, s in zip(uniq.tolist(), sums.tolist()):
                store[c] = store.get(c, 0) + s

    def __iadd__(self, other: PQStat) -> PQStat:
        for mine, theirs in ((self.iou, other.iou), (self.tp, other.tp), (self.fp, other.fp),
                             (self.fn, other.fn)):  # fmt: skip
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        return self

    def pq_average(self, categories: dict, isthing: bool | None) -> tuple[dict, dict]:
        """Average PQ/SQ/RQ over ``categories`` (all, things only or stuff only).

        Returns:
            ``{"pq", "sq", "rq", "n"}`` (NaN when no category has a TP, FP or FN) and the
            per-category values.
        """
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for label, info in categories.items():
            if isthing is not None and (info.get("isthing", 0) == 1) != isthing:
                continue
            iou = self.iou.get(label, 0.0)
            tp, fp, fn = self.tp.get(label, 0), self.fp.get(label, 0), self.fn.get(label, 0)
            if tp + fp + fn == 0:
                per_class[label] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            pq_c = iou / (tp + 0.5 * fp + 0.5 * fn)
            sq_c = iou / tp if tp != 0 else 0
            rq_c = tp / (tp + 0.5 * fp + 0.5 * fn)
            per_class[label] = {"pq": pq_c, "sq": sq_c, "rq": rq_c}
            pq, sq, rq = pq + pq_c, sq + sq_c, rq + rq_c
        if n == 0:
            return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}, per_class
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def _lookup(ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query id in ``ids`` (-1 when absent)."""
    if len(ids) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    order = np.argsort(ids)
    p = np.minimum(np.searchsorted(ids[order], query), len(ids) - 1)
    return np.where(ids[order][p] == query, order[p], -1)


def pq_compute_single_image(
    pan_gt: np.ndarray,
    gt_segments: list[dict],
    pan_pred: np.ndarray,
    pred_segments: list[dict],
    categories: dict,
    image_id=None,
) -> PQStat:
    """PQ statistics of one image.

    Args:
        pan_gt (ndarray[H, W] int): ground-truth segment ids (0 = VOID).
        gt_segments: ground-truth ``segments_info`` (``id``, ``category_id``, ``area``,
            ``iscrowd``).
        pan_pred (ndarray[H, W] int): predicted segment ids (0 = VOID).
        pred_segments: predicted ``segments_info`` (``id``, ``category_id``).
        categories: ``{category_id: category dict}``.
        image_id: named in errors.
    """
    if pan_gt.shape != pan_pred.shape:
        raise ValueError(
            f"In the image with ID {image_id} the prediction is {pan_pred.shape}, the ground "
            f"truth {pan_gt.shape}"
        )
    stat = PQStat()
    pan_gt = pan_gt.astype(np.uint64).ravel()
    pan_pred = pan_pred.astype(np.uint64).ravel()

    gt_ids = np.asarray([s["id"] for s in gt_segments], dtype=np.uint64)
    gt_cat = np.asarray([s["category_id"] for s in gt_segments], dtype=np.int64)
    gt_area = np.asarray([s["area"] for s in gt_segments], dtype=np.float64)
    gt_crowd = np.asarray([s.get("iscrowd", 0) == 1 for s in gt_segments], dtype=bool)
    pred_ids = np.asarray([s["id"] for s in pred_segments], dtype=np.uint64)
    pred_cat = np.asarray([s["category_id"] for s in pred_segments], dtype=np.int64)
    for ids, what in ((gt_ids, "ground-truth"), (pred_ids, "predicted")):
        if len(np.unique(ids)) != len(ids):
            raise KeyError(f"In the image with ID {image_id} {what} segment ids are not unique")

    # predicted areas from the PNG, with panopticapi's sanity checks
    labels, counts = np.unique(pan_pred, return_counts=True)
    where = _lookup(pred_ids, labels)
    unknown = labels[(where < 0) & (labels != VOID)]
    if len(unknown):
        raise KeyError(
            f"In the image with ID {image_id} segment with ID {int(unknown[0])} is presented in "
            "PNG and not presented in JSON."
        )
    pred_area = np.zeros(len(pred_ids), dtype=np.float64)
    pred_area[where[where >= 0]] = counts[where >= 0]
    in_png = np.zeros(len(pred_ids), dtype=bool)
    in_png[where[where >= 0]] = True
    if not in_png.all():
        raise KeyError(
            f"In the image with ID {image_id} the following segment IDs "
            f"{pred_ids[~in_png].astype(int).tolist()} are presented in JSON and not presented "
            "in PNG."
        )
    bad_cat = [c for c in pred_cat.tolist() if c not in categories]
    if bad_cat:
        raise KeyError(
            f"In the image with ID {image_id} a segment has unknown category_id {bad_cat[0]}."
        )

    # intersections of every (gt id, pred id) pair present
    pairs, inter = np.unique(pan_gt * OFFSET + pan_pred, return_counts=True)
    pair_gt, pair_pred = pairs // OFFSET, pairs % OFFSET
    inter = inter.astype(np.float64)

    gi = _lookup(gt_ids, pair_gt)
    pi = _lookup(pred_ids, pair_pred)
    # each prediction's overlap with VOID ground truth
    void_inter = np.zeros(len(pred_ids), dtype=np.float64)
    on_void = (pair_gt == VOID) & (pi >= 0)
    void_inter[pi[on_void]] = inter[on_void]

    cand = (gi >= 0) & (pi >= 0)
    cand[cand] &= ~gt_crowd[gi[cand]]
    cand[cand] &= gt_cat[gi[cand]] == pred_cat[pi[cand]]
    g, p, it = gi[cand], pi[cand], inter[cand]
    union = pred_area[p] + gt_area[g] - it - void_inter[p]
    iou = it / union
    hit = iou > 0.5  # IoU > 0.5 makes matches unique
    g, p, iou = g[hit], p[hit], iou[hit]
    stat.add(gt_cat[g], tp=np.ones(len(g), dtype=np.int64), iou=iou)
    gt_matched = np.zeros(len(gt_ids), dtype=bool)
    gt_matched[g] = True
    pred_matched = np.zeros(len(pred_ids), dtype=bool)
    pred_matched[p] = True

    # false negatives: unmatched non-crowd ground truth
    fn = ~gt_matched & ~gt_crowd
    stat.add(gt_cat[fn], fn=np.ones(int(fn.sum()), dtype=np.int64))

    # the crowd region of each category: its last crowd segment, as panopticapi's dict keeps
    crowd_of_cat = {}
    for j in np.flatnonzero(~gt_matched & gt_crowd):
        crowd_of_cat[int(gt_cat[j])] = int(gt_ids[j])
    ignored_inter = void_inter.copy()
    if crowd_of_cat:
        crowd_id_of_pred = np.array(
            [crowd_of_cat.get(int(c), -1) for c in pred_cat], dtype=np.int64
        )
        sel = (pi >= 0) & (pair_gt.astype(np.int64) == crowd_id_of_pred[np.maximum(pi, 0)])
        np.add.at(ignored_inter, pi[sel], inter[sel])
    unmatched = ~pred_matched
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = ignored_inter / pred_area
    fp = unmatched & ~(frac > 0.5)
    stat.add(pred_cat[fp], fp=np.ones(int(fp.sum()), dtype=np.int64))
    return stat


def _read_png_ids(path: str) -> np.ndarray:
    with PathManager.open(path, "rb") as f:
        return rgb2id(np.array(Image.open(f).convert("RGB"), dtype=np.uint32))


def pq_compute(
    gt_json_file: str,
    pred_json_file: str,
    gt_folder: str | None = None,
    pred_folder: str | None = None,
) -> dict:
    """Compute PQ from COCO panoptic json files and PNG folders (panopticapi's interface).

    Args:
        gt_json_file: ground-truth COCO panoptic json.
        pred_json_file: predictions in the same format (``annotations`` with ``segments_info``).
        gt_folder: folder of ground-truth PNGs (default: json file name without ``.json``).
        pred_folder: folder of predicted PNGs (default: likewise).

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": {...}}`` (0-1).
    """
    with PathManager.open(gt_json_file, "r") as f:
        gt_json = json.load(f)
    with PathManager.open(pred_json_file, "r") as f:
        pred_json = json.load(f)
    gt_folder = gt_folder or gt_json_file.replace(".json", "")
    pred_folder = pred_folder or pred_json_file.replace(".json", "")
    categories = {el["id"]: el for el in gt_json["categories"]}
    pred_annotations = {el["image_id"]: el for el in pred_json["annotations"]}
    stat = PQStat()
    for gt_ann in gt_json["annotations"]:
        image_id = gt_ann["image_id"]
        if image_id not in pred_annotations:
            raise KeyError(f"no prediction for the image with id: {image_id}")
        pred_ann = pred_annotations[image_id]
        pan_gt = _read_png_ids(os.path.join(gt_folder, gt_ann["file_name"]))
        pred_png = os.path.join(pred_folder, pred_ann["file_name"])
        if not PathManager.exists(pred_png):
            raise FileNotFoundError(
                f"pq_compute: the PNG '{pred_png}' of image id {image_id} does not exist"
            )
        pan_pred = _read_png_ids(pred_png)
        stat += pq_compute_single_image(
            pan_gt, gt_ann["segments_info"], pan_pred, pred_ann["segments_info"], categories,
            image_id,
        )  # fmt: skip
    results = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        results[name], per_class = stat.pq_average(categories, isthing=isthing)
        if name == "All":
            results["per_class"] = per_class
    return results


class COCOPanopticEvaluator(DatasetEvaluator):
    """Evaluate panoptic quality with the COCO panoptic rules.

    It saves panoptic predictions as PNGs in a temporary folder (and ``predictions.json`` in
    ``output_dir``) and compares them with the dataset's ``panoptic_json``/``panoptic_root``.
    """

    def __init__(self, dataset_name: str, output_dir: str | None = None):
        """
        Args:
            dataset_name: a registered COCO panoptic dataset (metadata with ``panoptic_json``,
                ``panoptic_root``, ``thing_dataset_id_to_contiguous_id`` and
                ``stuff_dataset_id_to_contiguous_id``).
            output_dir: where ``predictions.json`` is written.
        """
        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        if self._metadata.get("thing_dataset_id_to_contiguous_id") is None:
            # Detectron2 relies on the loader having filled it; load the dataset once to do so.
            DatasetCatalog.get(dataset_name)
        for key in (
            "thing_dataset_id_to_contiguous_id",
            "stuff_dataset_id_to_contiguous_id",
            "panoptic_json",
            "panoptic_root",
        ):
            if self._metadata.get(key) is None:
                raise KeyError(f"COCOPanopticEvaluator: metadata of '{dataset_name}' has no {key}")
        self._thing_contiguous_id_to_dataset_id = {
            v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()
        }
        self._stuff_contiguous_id_to_dataset_id = {
            v: k for k, v in self._metadata.stuff_dataset_id_to_contiguous_id.items()
        }
        self._output_dir = output_dir
        if self._output_dir is not None:
            PathManager.mkdirs(self._output_dir)
        self.reset()

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def _convert_category_id(self, segment_info: dict, image_id) -> dict:
        segment_info = dict(segment_info)
        isthing = segment_info.pop("isthing", None)
        if isthing is None:  # the model gives dataset category ids already
            return segment_info
        table = (
            self._thing_contiguous_id_to_dataset_id
            if isthing
            else self._stuff_contiguous_id_to_dataset_id
        )
        cid = segment_info["category_id"]
        if cid not in table:
            raise KeyError(
                f"COCOPanopticEvaluator: image id {image_id}, segment {segment_info.get('id')}: "
                f"{'thing' if isthing else 'stuff'} category {cid} is not in the metadata of "
                f"'{self._dataset_name}'"
            )
        segment_info["category_id"] = table[cid]
        return segment_info

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Encode each ``panoptic_seg`` output as a PNG plus its segments.

        Args:
            inputs: dataset dicts with ``image_id`` and ``file_name``.
            outputs: dicts with ``panoptic_seg`` = (Tensor[H, W] int segment ids with 0 for
                VOID, list of segment dicts with ``id``, ``category_id`` (contiguous) and
                ``isthing``), or (Tensor[H, W] of category * label_divisor + instance with -1
                for VOID, None).
        """
        for inp, output in zip(inputs, outputs):
            panoptic_img, segments_info = output["panoptic_seg"]
            panoptic_img = np.asarray(panoptic_img.cpu().numpy()).astype(np.int64)
            if segments_info is None:
                label_divisor = self._metadata.label_divisor
                thing_ids = set(self._metadata.thing_dataset_id_to_contiguous_id.values())
                segments_info = []
                for panoptic_label in np.unique(panoptic_img):
                    if panoptic_label == -1:  # VOID
                        continue
                    pred_class = int(panoptic_label) // label_divisor
                    segments_info.append(
                        {
                            "id": int(panoptic_label) + 1,
                            "category_id": pred_class,
                            "isthing": pred_class in thing_ids,
                        }
                    )
                panoptic_img = panoptic_img + 1  # the PQ code uses 0 for VOID
            file_name = os.path.basename(inp["file_name"])
            file_name_png = os.path.splitext(file_name)[0] + ".png"
            with io.BytesIO() as out:
                Image.fromarray(id2rgb(panoptic_img)).save(out, format="PNG")
                png = out.getvalue()
            self._predictions.append(
                {
                    "image_id": inp["image_id"],
                    "file_name": file_name_png,
                    "png_string": png,
                    "segments_info": [
                        self._convert_category_id(x, inp["image_id"]) for x in segments_info
                    ],
                }
            )

    def evaluate(self) -> OrderedDict | None:
        """Returns ``{"panoptic_seg": {"PQ", "SQ", "RQ", "PQ_th", ..., "RQ_st"}}`` (percent)."""
        comm = _comm()
        comm.synchronize()
        predictions = list(itertools.chain(*comm.gather(self._predictions)))
        if not comm.is_main_process():
            return None
        gt_json = PathManager.get_local_path(os.fspath(self._metadata.panoptic_json))
        gt_folder = PathManager.get_local_path(os.fspath(self._metadata.panoptic_root))
        with tempfile.TemporaryDirectory(prefix="panoptic_eval") as pred_dir:
            annotations = []
            for p in predictions:
                with open(os.path.join(pred_dir, p["file_name"]), "wb") as f:
                    f.write(p["png_string"])
                annotations.append({k: v for k, v in p.items() if k != "png_string"})
            with open(gt_json) as f:
                json_data = json.load(f)
            json_data["annotations"] = annotations
            output_dir = self._output_dir or pred_dir
            predictions_json = os.path.join(output_dir, "predictions.json")
            with PathManager.open(predictions_json, "w") as f:
                f.write(json.dumps(json_data))
            with contextlib.redirect_stdout(io.StringIO()):
                pq_res = pq_compute(
                    gt_json, predictions_json, gt_folder=gt_folder, pred_folder=pred_dir
                )
        res = {}
        for key, name in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            for m in ("pq", "sq", "rq"):
                res[f"{m.upper()}{name}"] = 100 * pq_res[key][m]
        results = OrderedDict({"panoptic_seg": res})
        _print_panoptic_results(pq_res)
        return results


def _print_panoptic_results(pq_res: dict) -> None:
    from tabulate import tabulate

    headers = ["", "PQ", "SQ", "RQ", "#categories"]
    data = [
        [name] + [pq_res[name][k] * 100 for k in ("pq", "sq", "rq")] + [pq_res[name]["n"]]
        for name in ("All", "Things", "Stuff")
    ]
    table = tabulate(data, headers=headers, tablefmt="pipe", floatfmt=".3f", stralign="center")
    logger.info("Panoptic Evaluation Results:\n%s", table)

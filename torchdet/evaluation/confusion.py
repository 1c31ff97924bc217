"""Per-class precision/recall and a detection confusion matrix (beyond Detectron2).

Both come from what :class:`~torchdet.evaluation.COCOEvaluator` keeps after ``evaluate``:
its ground truth (``coco_api``) and the COCOeval of each task (``coco_evals``), whose per-
detection matches (:class:`~torchdet.evaluation.fast_eval_api.COCOeval_opt`) give the table.

- :func:`precision_recall_table`: for each category, at one IoU threshold and score threshold,
  the counts of ground truth, true and false positives, and precision / recall, with COCO's
  matching rules (crowd and out-of-range regions ignored, ``maxDets[-1]`` per image).
- :func:`confusion_matrix`: class-agnostic greedy matching (highest score first, best IoU,
  crowd ground truth left out) of detections above a score threshold: ``matrix[g, p]`` counts
  ground truth of class ``g`` matched by a detection of class ``p``; the last row holds
  unmatched detections (background), the last column missed ground truth.
- :func:`plot_confusion_matrix`: a PNG, drawn with matplotlib when installed, else with PIL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO

from .fast_eval_api import COCOeval_opt, _match_bucket

__all__ = [
    "confusion_matrix",
    "confusion_matrix_from_evaluator",
    "plot_confusion_matrix",
    "precision_recall_table",
]


def precision_recall_table(
    coco_eval: COCOeval_opt,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    class_names: Sequence[str] | None = None,
) -> list[dict]:
    """Per-category detection counts, precision and recall.

    Args:
        coco_eval: an evaluated :class:`COCOeval_opt` (e.g. ``evaluator.coco_evals["bbox"]``).
        iou_threshold: one of ``coco_eval.params.iouThrs``.
        score_threshold: detections scoring below it are dropped.
        class_names: names in category order (default: the ground truth's category names).

    Returns:
        One dict per category: ``category_id``, ``name``, ``gt`` (non-ignored ground truth),
        ``tp``, ``fp``, ``precision`` and ``recall`` (NaN when undefined).
    """
    if not isinstance(coco_eval, COCOeval_opt) or not hasattr(coco_eval, "det_results"):
        raise TypeError(
            "precision_recall_table: needs an evaluated COCOeval_opt (use_fast_impl=True)"
        )
    p = coco_eval.params
    thrs = np.asarray(p.iouThrs)
    t = np.flatnonzero(np.isclose(thrs, iou_threshold))
    if len(t) == 0:
        raise ValueError(
            f"precision_recall_table: iou_threshold {iou_threshold} is not one of the evaluated "
            f"thresholds {thrs.tolist()}"
        )
    t = int(t[0])
    cat_ids = list(p.catIds) if p.useCats else [-1]
    if class_names is None:
        cats = coco_eval.cocoGt.cats
        class_names = [cats[c]["name"] if c in cats else "all" for c in cat_ids]
    if len(class_names) != len(cat_ids):
        raise ValueError(
            f"precision_recall_table: {len(class_names)} class names for {len(cat_ids)} categories"
        )
    det, gt = coco_eval.det_results, coco_eval.gt_results
    keep = (det["score"] >= score_threshold) & (det["rank"] < p.maxDets[-1])
    valid = keep & ~det["ignored"][:, 0, t]  # area range "all"
    tp_mask = valid & det["matched"][:, 0, t]
    fp_mask = valid & ~det["matched"][:, 0, t]
    k = len(cat_ids)
    tp = np.bincount(det["cat_pos"][tp_mask], minlength=k)
    fp = np.bincount(det["cat_pos"][fp_mask], minlength=k)
    npig = np.bincount(gt["cat_pos"][~gt["ignore"][:, 0]], minlength=k)
    rows = []
    for i, (cid, name) in enumerate(zip(cat_ids, class_names)):
        n_det = tp[i] + fp[i]
        rows.append(
            {
                "category_id": cid,
                "name": name,
                "gt": int(npig[i]),
                "tp": int(tp[i]),
                "fp": int(fp[i]),
                "precision": float(tp[i] / n_det) if n_det else float("nan"),
                "recall": float(tp[i] / npig[i]) if npig[i] else float("nan"),
            }
        )
    return rows


def confusion_matrix(
    coco_gt: COCO,
    coco_results: list[dict] | COCO,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
) -> tuple[np.ndarray, list[int]]:
    """Class-agnostic detection confusion matrix.

    Args:
        coco_gt: ground truth.
        coco_results: detection records (dataset category ids, XYWH ``bbox``) or a loaded
            results ``COCO`` (e.g. ``coco_eval.cocoDt``).
        iou_threshold: minimum box IoU of a match.
        score_threshold: detections scoring below it are dropped.

    Returns:
        ``matrix`` (ndarray[K + 1, K + 1] int64): rows ground-truth class, columns predicted
        class, index K background; and the K category ids in matrix order.
    """
    cat_ids = sorted(coco_gt.cats)
    k = len(cat_ids)
    cat_pos = {c: i for i, c in enumerate(cat_ids)}
    if isinstance(coco_results, COCO):
        dets = list(coco_results.anns.values())
    else:
        dets = list(coco_results)
    dets = [d for d in dets if d["score"] >= score_threshold]
    bad = next((d for d in dets if d["category_id"] not in cat_pos), None)
    if bad is not None:
        raise ValueError(
            f"confusion_matrix: a detection on image {bad['image_id']} has unknown category id "
            f"{bad['category_id']}"
        )
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    by_img_det: dict[Any, list[dict]] = {}
    for d in dets:
        by_img_det.setdefault(d["image_id"], []).append(d)
    units = []
    for img_id in sorted(set(coco_gt.imgs) | set(by_img_det)):
        gts = [a for a in coco_gt.imgToAnns.get(img_id, []) if not a.get("iscrowd", 0)]
        ds = sorted(by_img_det.get(img_id, []), key=lambda d: -d["score"])
        g_cls = np.asarray([cat_pos[a["category_id"]] for a in gts], dtype=np.int64)
        d_cls = np.asarray([cat_pos[d["category_id"]] for d in ds], dtype=np.int64)
        if not ds:
            np.add.at(matrix, (g_cls, k), 1)
            continue
        if not gts:
            np.add.at(matrix, (k, d_cls), 1)
            continue
        ious = np.asarray(
            mask_util.iou([d["bbox"] for d in ds], [a["bbox"] for a in gts], [0] * len(gts))
        )
        units.append((ious, g_cls, d_cls))
    if units:
        d_max = max(u[0].shape[0] for u in units)
        g_max = max(u[0].shape[1] for u in units)
        n = len(units)
        order = np.argsort([-u[0].shape[0] for u in units], kind="stable")
        units = [units[i] for i in order]
        ious = np.full((n, d_max, g_max), -1.0)
        for j, (iou, _, _) in enumerate(units):
            ious[j, : iou.shape[0], : iou.shape[1]] = iou
        num_dets = np.asarray([u[0].shape[0] for u in units])
        _, _, gt_index = _match_bucket(
            ious,
            num_dets,
            np.zeros((n, 1, g_max), dtype=bool),
            np.zeros((n, g_max), dtype=bool),
            np.ones((n, g_max), dtype=bool),
            np.asarray([iou_threshold], dtype=np.float64),
        )
        for j, (_, g_cls, d_cls) in enumerate(units):
            gi = gt_index[j, 0, : len(d_cls)]
            hit = gi >= 0
            np.add.at(matrix, (g_cls[gi[hit]], d_cls[hit]), 1)
            np.add.at(matrix, (k, d_cls[~hit]), 1)
            missed = np.ones(len(g_cls), dtype=bool)
            missed[gi[hit]] = False
            np.add.at(matrix, (g_cls[missed], k), 1)
    return matrix, cat_ids


def confusion_matrix_from_evaluator(
    evaluator: Any, *, iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> tuple[np.ndarray, list[str]]:
    """The confusion matrix of a :class:`COCOEvaluator` after ``evaluate``, with class names
    (plus "background")."""
    evals = getattr(evaluator, "coco_evals", None)
    if not evals or "bbox" not in evals:
        raise ValueError(
            "confusion_matrix_from_evaluator: the evaluator has no bbox evaluation; call "
            "evaluate() with detections first"
        )
    coco_gt = evaluator.coco_api
    matrix, cat_ids = confusion_matrix(
        coco_gt,
        evals["bbox"].cocoDt,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
    )
    names = [coco_gt.cats[c]["name"] for c in cat_ids] + ["background"]
    return matrix, names


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike
) -> str:
    """Write the matrix as a PNG heat map with counts.

    Uses matplotlib when it is installed, otherwise draws the image with PIL.

    Args:
        matrix (ndarray[N, N]): counts, rows ground truth, columns predictions.
        class_names: N labels.
        path: output file (``.png``).

    Returns:
        The path written.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"plot_confusion_matrix: matrix must be square, got {matrix.shape}")
    if len(class_names) != matrix.shape[0]:
        raise ValueError(
            f"plot_confusion_matrix: {len(class_names)} names for a {matrix.shape[0]}-row matrix"
        )
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_with_pil(matrix, class_names, path)
        return path
    n = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(4, 0.6 * n + 2)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90)
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    vmax = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            color = "white" if vmax and matrix[i, j] > vmax / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_with_pil(matrix: np.ndarray, class_names: Sequence[str], path: str) -> None:
    from PIL import Image, ImageDraw

    n = matrix.shape[0]
    cell, margin = 40, 8 * max((len(s) for s in class_names), default=1) + 16
    size = (margin + n * cell + 8, margin + n * cell + 8)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    vmax = float(matrix.max()) if matrix.size and matrix.max() > 0 else 1.0
    # cell colour: white -> blue with the count (vectorised over cells)
    shade = (255 * (1 - 0.8 * matrix / vmax)).astype(int)
    for i in range(n):
        draw.text((4, margin + i * cell + cell // 3), str(class_names[i]), fill="black")
        draw.text((margin + i * cell + 2, 4), str(class_names[i])[:5], fill="black")
        for j in range(n):
            x0, y0 = margin + j * cell, margin + i * cell
            s = int(shade[i, j])
            draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=(s, s, 255), outline="gray")
            draw.text((x0 + 4, y0 + cell // 3), str(int(matrix[i, j])), fill="black")
    img.save(path, format="PNG")

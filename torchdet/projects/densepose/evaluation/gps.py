"""Geodesic Point Similarity (GPS) and its mask-weighted variant GPSm, the DensePose
matching scores, and COCO-style AP over them.

GPS of a detection against a ground-truth person with P annotated points is
``mean_p exp(-d_p^2 / (2 kappa^2))`` where ``d_p`` is the geodesic distance on the body
surface between the annotated and the estimated surface point (infinite when the estimate
puts the point on the background), ``kappa = 0.255``. GPSm is ``sqrt(GPS * mask IoU)``.
The geodesic distance needs the body model's tables; ``distance_fn`` is pluggable and
defaults to ``uv_distance`` (distance inside a chart, infinite across charts), exact for
planar charts such as those of the synthetic dataset.

Shape shorthand: P points, M x M the estimate's side.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..structures import DensePoseChartPredictorOutput, DensePoseDataRelative

__all__ = ["GPS_KAPPA", "chart_at_points", "gps", "gpsm", "uv_distance", "average_precision"]

GPS_KAPPA = 0.255


def uv_distance(i_gt, u_gt, v_gt, i_est, u_est, v_est) -> torch.Tensor:
    """Euclidean (U, V) distance on the same chart; infinite across charts or on background."""
    d = torch.sqrt((u_gt - u_est) ** 2 + (v_gt - v_est) ** 2)
    return torch.where((i_est == i_gt) & (i_est > 0), d, torch.full_like(d, float("inf")))


def chart_at_points(
    output: DensePoseChartPredictorOutput, box: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimated patch, U and V at image points.

    Args:
        output: the chart outputs of one detection (length 1).
        box (Tensor[4]): the detection box, XYXY absolute.
        x, y (Tensor[P]): image coordinates.

    Returns:
        i (Tensor[P] int64; 0 where the coarse segmentation says background or outside the
        box), u, v (Tensor[P]).
    """
    if len(output) != 1:
        raise ValueError(f"chart_at_points takes one detection's output, got {len(output)}")
    w = (box[2] - box[0]).clamp(min=1e-6)
    h = (box[3] - box[1]).clamp(min=1e-6)
    gx = (x - box[0]) / w * 2 - 1
    gy = (y - box[1]) / h * 2 - 1
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(output.u.dtype)

    def sample(t: torch.Tensor) -> torch.Tensor:  # (1, C, M, M) -> (C, P)
        return F.grid_sample(t, grid, mode="bilinear", align_corners=False)[0, :, 0]

    inside = (gx >= -1) & (gx <= 1) & (gy >= -1) & (gy <= 1)
    fg = sample(output.coarse_segm).argmax(dim=0) > 0
    i = sample(output.fine_segm).argmax(dim=0) * (fg & inside)
    u_all, v_all = sample(output.u), sample(output.v)  # (K, P)
    u = u_all.gather(0, i.unsqueeze(0))[0]
    v = v_all.gather(0, i.unsqueeze(0))[0]
    return i, u, v


def gps(
    output: DensePoseChartPredictorOutput,
    det_box: torch.Tensor,
    gt: DensePoseDataRelative,
    gt_box: torch.Tensor,
    distance_fn: Callable = uv_distance,
    kappa: float = GPS_KAPPA,
) -> float:
    """GPS of one detection (``output`` over ``det_box``, XYXY) against one annotated person
    (``gt`` over ``gt_box``, XYXY). 0 when the person has no annotated point."""
    if gt.x.numel() == 0:
        return 0.0
    x = gt_box[0] + gt.x / 256.0 * (gt_box[2] - gt_box[0])
    y = gt_box[1] + gt.y / 256.0 * (gt_box[3] - gt_box[1])
    i, u, v = chart_at_points(output, det_box, x, y)
    d = distance_fn(gt.i, gt.u, gt.v, i, u, v)
    return float(torch.exp(-(d**2) / (2 * kappa**2)).mean())


def gpsm(
    output: DensePoseChartPredictorOutput,
    det_box: torch.Tensor,
    gt: DensePoseDataRelative,
    gt_box: torch.Tensor,
    distance_fn: Callable = uv_distance,
    kappa: float = GPS_KAPPA,
) -> float:
    """``sqrt(GPS * IoU)`` with the IoU of the estimated foreground and ``dp_masks``, both on
    the 256 x 256 grid over the ground-truth box."""
    g = gps(output, det_box, gt, gt_box, distance_fn, kappa)
    n = DensePoseDataRelative.MASK_SIZE
    c = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    x = gt_box[0] + xx.flatten() * (gt_box[2] - gt_box[0])
    y = gt_box[1] + yy.flatten() * (gt_box[3] - gt_box[1])
    i, _, _ = chart_at_points(output, det_box, x, y)
    est = i > 0
    ref = gt.segm.flatten() > 0
    union = (est | ref).sum()
    iou = float((est & ref).sum() / union) if union > 0 else 0.0
    return float(np.sqrt(g * iou))


def average_precision(
    scores_per_image: list[np.ndarray],
    similarity_per_image: list[np.ndarray],
    num_gt: int,
    thresholds: np.ndarray | None = None,
) -> dict[str, float]:
    """COCO-style AP of detections against ground truth under a similarity (GPS or GPSm).

    Args:
        scores_per_image: detection scores (D_i,) per image.
        similarity_per_image: (D_i, G_i) similarities per image.
        num_gt: the number of ground-truth people in all.
        thresholds: similarity thresholds (default 0.50:0.05:0.95).

    Returns:
        ``AP`` (mean over thresholds), ``AP50``, ``AP75``, in 0-100.
    """
    if thresholds is None:
        thresholds = np.linspace(0.5, 0.95, 10)
    recall_points = np.linspace(0, 1, 101)
    aps = []
    for t in thresholds:
        all_scores, all_tp = [], []
        for scores, sim in zip(scores_per_image, similarity_per_image):
            order = np.argsort(-scores, kind="mergesort")
            used = np.zeros(sim.shape[1], dtype=bool)
            tp = np.zeros(len(scores), dtype=bool)
            for rank, d in enumerate(order):  # greedy, best-scoring first (as COCOeval)
                cand = np.where(~used & (sim[d] >= t), sim[d], -1.0)
                if cand.size and cand.max() >= 0:
                    j = int(cand.argmax())
                    used[j] = True
                    tp[rank] = True
            all_scores.append(scores[order])
            all_tp.append(tp)
        if num_gt == 0:
            aps.append(float("nan"))
            continue
        scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
        tp = np.concatenate(all_tp) if all_tp else np.zeros(0, dtype=bool)
        order = np.argsort(-scores, kind="mergesort")
        tp = tp[order]
        ctp = np.cumsum(tp)
        recall = ctp / num_gt
        precision = ctp / np.arange(1, len(tp) + 1)
        # Monotone precision envelope, sampled at 101 recall points.
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        idx = np.searchsorted(recall, recall_points, side="left")
        sampled = np.array([precision[k] if k < len(precision) else 0.0 for k in idx])
        aps.append(float(sampled.mean()))
    aps_arr = np.array(aps) * 100
    return {
        "AP": float(np.nanmean(aps_arr)),
        "AP50": float(aps_arr[0]),
        "AP75": float(aps_arr[5]) if len(aps_arr) > 5 else float("nan"),
    }

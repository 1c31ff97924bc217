"""A faster drop-in ``COCOeval``: pycocotools' per-image matching and accumulation, vectorised.

pycocotools computes IoUs in C but matches detections to ground truth (``evaluateImg``) and
builds precision/recall curves (``accumulate``) in nested Python loops, which dominate the run
time on large result sets. :class:`COCOeval_opt` keeps pycocotools' ``_prepare``,
``computeIoU``/``computeOks`` and ``summarize`` and replaces those two steps with numpy code that
follows their rules decision for decision, so every statistic is bit-identical:

- greedy matching in descending score order (stable sort, truncated to ``maxDets[-1]``), for every
  IoU threshold and area range at once; a detection takes the unmatched ground truth with the
  highest IoU >= threshold (ties: the later one), crowd ground truth can match many detections,
  and a non-ignored ground truth always beats an ignored one;
- per category, area range and max-detection limit, detections of all images sorted by score
  (ties: image order, then rank in the image), cumulative TP/FP, the interpolated precision at
  the 101 recall thresholds.

Shape shorthand: U evaluation units (image, category) in a bucket, D detections and G ground
truths per unit (padded), A area ranges, T IoU thresholds, R recall thresholds, K categories,
M max-detection limits, N detections in total.
"""

from __future__ import annotations

import copy
import datetime
import logging
import time

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.cocoeval import COCOeval

__all__ = ["COCOeval_opt"]

logger = logging.getLogger(__name__)


def _pad_size(n: int) -> int:
    """Round up to a power of two, so units of similar sizes share one padded bucket."""
    return 1 << max(0, int(n) - 1).bit_length()


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the LAST maximum along the last axis (pycocotools replaces on ``>=``)."""
    size = values.shape[-1]
    return size - 1 - np.argmax(values[..., ::-1], axis=-1)


def _match_bucket(
    ious: np.ndarray,
    num_dets: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    gt_nonzero_id: np.ndarray,
    iou_thrs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy COCO matching for a bucket of units, all area ranges and thresholds at once.

    Args:
        ious (ndarray[U, D, G] float64): detection/ground-truth IoUs, detections in score order;
            padding holds -1 so it never reaches a threshold.
        num_dets (ndarray[U] int): real detections per unit; units sorted by it, descending.
        gt_ignore (ndarray[U, A, G] bool): ground truth ignored in each area range.
        gt_crowd (ndarray[U, G] bool): crowd ground truth (may match several detections).
        gt_nonzero_id (ndarray[U, G] bool): ground-truth id != 0 (pycocotools stores matches as
            ids and reads 0 as "unmatched").
        iou_thrs (ndarray[T] float64): IoU thresholds, already capped at 1 - 1e-10.

    Returns:
        matched (ndarray[U, A, T, D] bool), ignored (ndarray[U, A, T, D] bool): a detection's
        match (as pycocotools counts it) and whether its matched ground truth is ignored;
        gt_index (ndarray[U, T, D] int32): matched ground truth in area range 0, -1 if none.
    """
    num_units, num_d, num_g = ious.shape
    num_a, num_t = gt_ignore.shape[1], iou_thrs.shape[0]
    taken = np.zeros((num_units, num_a, num_t, num_g), dtype=bool)
    matched = np.zeros((num_units, num_a, num_t, num_d), dtype=bool)
    ignored = np.zeros((num_units, num_a, num_t, num_d), dtype=bool)
    gt_index = np.full((num_units, num_t, num_d), -1, dtype=np.int32)
    thr = iou_thrs[None, None, :, None]
    for k in range(num_d):
        n = int(np.count_nonzero(num_dets > k))  # units are sorted: the first n are active
        if n == 0:
            break
        iou = ious[:n, k][:, None, None, :]  # (n, 1, 1, G)
        avail = (iou >= thr) & (~taken[:n] | gt_crowd[:n, None, None, :])  # (n, A, T, G)
        ign = gt_ignore[:n, :, None, :]
        # Ground truth is sorted non-ignored first and the search stops at the first ignored one
        # once a non-ignored match exists: two phases, each keeping the (last) best IoU.
        cand_keep = avail & ~ign
        cand_ign = avail & ign
        has_keep = cand_keep.any(-1)
        has_ign = cand_ign.any(-1)
        best_keep = _last_argmax(np.where(cand_keep, iou, -np.inf))
        best_ign = _last_argmax(np.where(cand_ign, iou, -np.inf))
        found = has_keep | has_ign  # (n, A, T)
        best = np.where(has_keep, best_keep, best_ign)  # (n, A, T)
        uu, aa, tt = np.nonzero(found)
        gg = best[uu, aa, tt]
        taken[uu, aa, tt, gg] = True
        matched[uu, aa, tt, k] = gt_nonzero_id[uu, gg]
        ignored[uu, aa, tt, k] = gt_ignore[uu, aa, gg]
        sel = aa == 0
        gt_index[uu[sel], tt[sel], k] = gg[sel]
    return matched, ignored, gt_index


def _box_iou_xywh(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' box IoU (``bbIou`` in maskApi.c), batched, with the same operations.

    Args:
        dt (ndarray[U, D, 4] float64), gt (ndarray[U, G, 4] float64): XYWH boxes.
        crowd (ndarray[U, G] bool): crowd ground truth, whose IoU is intersection / detection
            area.

    Returns:
        ndarray[U, D, G] float64.
    """
    dx, dy, dw, dh = (dt[:, :, None, i] for i in range(4))  # (U, D, 1)
    gx, gy, gw, gh = (gt[:, None, :, i] for i in range(4))  # (U, 1, G)
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    union = np.where(crowd[:, None, :], dw * dh, dw * dh + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


class COCOeval_opt(COCOeval):
    """pycocotools ``COCOeval`` with vectorised ``evaluate`` and ``accumulate``.

    Same constructor, parameters and statistics as ``pycocotools.cocoeval.COCOeval``.
    ``self.evalImgs`` is not filled (it is a list of per-image dicts only the slow path needs);
    the per-detection results are in :attr:`det_results` instead, and ``self.ious`` is only
    filled for masks and keypoints (box IoUs are computed in batches).
    """

    def evaluate(self) -> None:
        """Match detections to ground truth for every image, category and area range."""
        tic = time.time()
        p = self.params
        if p.useSegm is not None:
            p.iouType = "segm" if p.useSegm == 1 else "bbox"
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self.params = p
        self._prepare()
        cat_ids = p.catIds if p.useCats else [-1]
        if p.iouType in ("segm", "bbox"):
            compute_iou = self.computeIoU
        elif p.iouType == "keypoints":
            compute_iou = self.computeOks
        else:
            raise ValueError(f"COCOeval_opt: unknown iouType {p.iouType!r}")
        max_det = p.maxDets[-1]
        area_rng = np.asarray(p.areaRng, dtype=np.float64)  # (A, 2)

        # Units present in the ground truth or the detections, in (image, category) order.
        img_pos = {img: i for i, img in enumerate(p.imgIds)}
        if p.useCats:
            cat_pos = {cat: k for k, cat in enumerate(cat_ids)}
            keys = {key for key, v in self._gts.items() if v}
            keys |= {key for key, v in self._dts.items() if v}
            keys = sorted(
                (img_pos[i], cat_pos[c], i, c) for i, c in keys if i in img_pos and c in cat_pos
            )
        else:
            imgs = {i for i, _ in self._gts} | {i for i, _ in self._dts}
            keys = sorted((img_pos[i], 0, i, -1) for i in imgs if i in img_pos)

        # Axis-aligned box IoUs are computed here for all units at once (pycocotools' formula,
        # so bit-identical); a subclass with its own computeIoU (rotated boxes) keeps it.
        # Mask IoUs are computed once per image (all its detections against all its ground
        # truth, the same C routine per pair) instead of once per (image, category).
        box_iou = p.iouType == "bbox" and type(self).computeIoU is COCOeval.computeIoU
        mask_iou = p.iouType == "segm" and type(self).computeIoU is COCOeval.computeIoU
        self.ious = {}
        det_box: list = []
        gt_box: list = []
        det_seg: list = []
        gt_seg: list = []
        det_score, det_area, det_unit, det_rank, det_id = [], [], [], [], []
        gt_area, gt_ignore, gt_crowd, gt_id, gt_unit = [], [], [], [], []
        unit_img, unit_cat, unit_ious, unit_nd, unit_ng = [], [], [], [], []
        for u, (ipos, kpos, img, cat) in enumerate(keys):
            if p.useCats:
                gts, dts = self._gts[img, cat], self._dts[img, cat]
            else:
                gts = [g for c in p.catIds for g in self._gts[img, c]]
                dts = [d for c in p.catIds for d in self._dts[img, c]]
            order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:max_det]
            dts = [dts[i] for i in order]
            if box_iou:
                ious = None
                det_box += [d["bbox"] for d in dts]
                gt_box += [g["bbox"] for g in gts]
            elif mask_iou:
                ious = None
                det_seg += [d["segmentation"] for d in dts]
                gt_seg += [g["segmentation"] for g in gts]
            else:
                ious = compute_iou(img, cat)
                self.ious[img, cat] = ious
            det_score += [d["score"] for d in dts]
            det_area += [d["area"] for d in dts]
            det_id += [d["id"] for d in dts]
            det_rank.append(np.arange(len(dts)))
            det_unit.append(np.full(len(dts), u))
            gt_area += [g["area"] for g in gts]
            gt_ignore += [bool(g["ignore"]) for g in gts]
            gt_crowd += [bool(g["iscrowd"]) for g in gts]
            gt_id += [g["id"] for g in gts]
            gt_unit.append(np.full(len(gts), u))
            unit_img.append(ipos)
            unit_cat.append(kpos)
            unit_ious.append(ious if ious is not None and len(ious) else None)
            unit_nd.append(len(dts))
            unit_ng.append(len(gts))

        def _cat(parts: list, dtype) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        det_score = np.asarray(det_score, dtype=np.float64)
        det_area = np.asarray(det_area, dtype=np.float64)
        det_rank = _cat(det_rank, np.int64)
        det_unit = _cat(det_unit, np.int64)
        gt_area = np.asarray(gt_area, dtype=np.float64)
        gt_ignore = np.asarray(gt_ignore, dtype=bool)
        gt_crowd = np.asarray(gt_crowd, dtype=bool)
        gt_id_arr = np.asarray(gt_id, dtype=np.int64)
        gt_unit = _cat(gt_unit, np.int64)
        unit_nd = np.asarray(unit_nd, dtype=np.int64)
        unit_ng = np.asarray(unit_ng, dtype=np.int64)
        det_start = np.concatenate([[0], np.cumsum(unit_nd)])
        gt_start = np.concatenate([[0], np.cumsum(unit_ng)])

        # Per area range: ground truth ignored (flag or area outside), detection area outside.
        gt_ign_a = gt_ignore[:, None] | (gt_area[:, None] < area_rng[None, :, 0])
        gt_ign_a |= gt_area[:, None] > area_rng[None, :, 1]  # (Ngt, A)
        det_out_a = (det_area[:, None] < area_rng[None, :, 0]) | (
            det_area[:, None] > area_rng[None, :, 1]
        )  # (N, A)

        num_a, num_t = len(area_rng), len(p.iouThrs)
        n_det = len(det_score)
        matched = np.zeros((n_det, num_a, num_t), dtype=bool)
        matched_ign = np.zeros((n_det, num_a, num_t), dtype=bool)
        matched_gt = np.full((n_det, num_t), -1, dtype=np.int64)  # global gt index, area "all"
        thrs = np.minimum(np.asarray(p.iouThrs, dtype=np.float64), 1 - 1e-10)
        if any(u is not None and u.dtype == np.float32 for u in unit_ious):
            # float32 IoUs (rotated boxes, computed by torch) are compared with the threshold
            # rounded to float32, as torch's scalar comparison does in Detectron2's evaluation.
            thrs = thrs.astype(np.float32).astype(np.float64)

        # Only units with both detections and ground truth need matching; bucket them by padded
        # sizes so one vectorised pass handles thousands of units.
        if mask_iou:
            unit_ious = self._mask_ious_per_image(
                unit_img, unit_nd, unit_ng, det_start, gt_start, det_seg, gt_seg, gt_crowd
            )
        if box_iou:
            det_box = np.asarray(det_box, dtype=np.float64).reshape(-1, 4)
            gt_box = np.asarray(gt_box, dtype=np.float64).reshape(-1, 4)
            to_match = np.flatnonzero((unit_nd > 0) & (unit_ng > 0)).tolist()
        else:
            to_match = [u for u in range(len(keys)) if unit_ious[u] is not None]
        buckets: dict[tuple[int, int], list[int]] = {}
        for u in to_match:
            buckets.setdefault((_pad_size(unit_nd[u]), _pad_size(unit_ng[u])), []).append(u)
        for (pd, pg), bucket in buckets.items():
            bucket = np.asarray(bucket)[np.argsort(-unit_nd[bucket], kind="stable")]
            # bounded memory: at most ~2M (unit, detection, ground truth) cells per pass
            step = max(1, (1 << 21) // (pd * pg))
            for start in range(0, len(bucket), step):
                units = bucket[start : start + step]
                nu = len(units)
                nd_u, ng_u = unit_nd[units], unit_ng[units]
                jj, kk = np.nonzero(np.arange(pd)[None, :] < nd_u[:, None])
                dflat = det_start[units[jj]] + kk
                gj, gk = np.nonzero(np.arange(pg)[None, :] < ng_u[:, None])
                gflat = gt_start[units[gj]] + gk
                ign = np.zeros((nu, num_a, pg), dtype=bool)
                ign[gj, :, gk] = gt_ign_a[gflat]
                crowd = np.zeros((nu, pg), dtype=bool)
                crowd[gj, gk] = gt_crowd[gflat]
                nonzero = np.zeros((nu, pg), dtype=bool)
                nonzero[gj, gk] = gt_id_arr[gflat] != 0
                if box_iou:
                    db = np.zeros((nu, pd, 4))
                    db[jj, kk] = det_box[dflat]
                    gb = np.zeros((nu, pg, 4))
                    gb[gj, gk] = gt_box[gflat]
                    valid = (np.arange(pd)[None, :, None] < nd_u[:, None, None]) & (
                        np.arange(pg)[None, None, :] < ng_u[:, None, None]
                    )
                    ious = np.where(valid, _box_iou_xywh(db, gb, crowd), -1.0)
                else:
                    ious = np.full((nu, pd, pg), -1.0)
                    for j, u in enumerate(units):
                        ious[j, : nd_u[j], : ng_u[j]] = unit_ious[u][: nd_u[j]]
                m, mi, gi = _match_bucket(ious, nd_u, ign, crowd, nonzero, thrs)
                # scatter back to flat detection order
                matched[dflat] = m[jj, :, :, kk]
                matched_ign[dflat] = mi[jj, :, :, kk]
                gidx = gi[jj, :, kk]
                matched_gt[dflat] = np.where(gidx >= 0, gidx + gt_start[units[jj]][:, None], -1)

        # pycocotools flags an unmatched detection as ignored by "dtm == 0" and the area test; a
        # match to a ground truth whose id is 0 reads as unmatched there, and is handled alike.
        det_ignored = matched_ign | (~matched & det_out_a[:, :, None])
        self.det_results = {
            "score": det_score,
            "area": det_area,
            "id": np.asarray(det_id, dtype=np.int64),
            "rank": det_rank,
            "img_pos": np.asarray(unit_img, dtype=np.int64)[det_unit]
            if n_det
            else np.zeros(0, np.int64),
            "cat_pos": np.asarray(unit_cat, dtype=np.int64)[det_unit]
            if n_det
            else np.zeros(0, np.int64),
            "matched": matched,  # (N, A, T)
            "ignored": det_ignored,  # (N, A, T)
            "matched_gt": matched_gt,  # (N, T), index into the gt arrays, area range "all"
        }
        self.gt_results = {
            "ignore": gt_ign_a,  # (Ngt, A)
            "id": gt_id_arr,
            "cat_pos": np.asarray(unit_cat, dtype=np.int64)[gt_unit]
            if len(gt_unit)
            else np.zeros(0, np.int64),
            "img_pos": np.asarray(unit_img, dtype=np.int64)[gt_unit]
            if len(gt_unit)
            else np.zeros(0, np.int64),
        }
        self.evalImgs = []
        self._paramsEval = copy.deepcopy(self.params)
        logger.debug("COCOeval_opt.evaluate: %.2fs", time.time() - tic)

    @staticmethod
    def _mask_ious_per_image(
        unit_img: list[int],
        unit_nd: np.ndarray,
        unit_ng: np.ndarray,
        det_start: np.ndarray,
        gt_start: np.ndarray,
        det_seg: list,
        gt_seg: list,
        gt_crowd: np.ndarray,
    ) -> list[np.ndarray | None]:
        """Per-unit mask IoU blocks (ndarray[D, G] or None), one pycocotools call per image.

        Units are in (image, category) order, so an image's detections and ground truth are
        contiguous ranges of the flat lists.
        """
        unit_ious: list[np.ndarray | None] = [None] * len(unit_img)
        img = np.asarray(unit_img, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]]) if len(img) else []
        ends = np.r_[starts[1:], len(img)] if len(img) else []
        for ua, ub in zip(starts, ends):
            d0, d1, g0, g1 = det_start[ua], det_start[ub], gt_start[ua], gt_start[ub]
            if d1 == d0 or g1 == g0:
                continue
            block = np.asarray(
                mask_util.iou(det_seg[d0:d1], gt_seg[g0:g1], gt_crowd[g0:g1].astype(np.uint8))
            ).reshape(d1 - d0, g1 - g0)
            for u in range(ua, ub):
                if unit_nd[u] and unit_ng[u]:
                    unit_ious[u] = block[
                        det_start[u] - d0 : det_start[u + 1] - d0,
                        gt_start[u] - g0 : gt_start[u + 1] - g0,
                    ]
        return unit_ious

    def accumulate(self, p=None) -> None:
        """Precision/recall/score arrays exactly as ``COCOeval.accumulate`` builds them."""
        tic = time.time()
        if not hasattr(self, "det_results"):
            raise RuntimeError("COCOeval_opt.accumulate: call evaluate() first")
        p = self._paramsEval if p is None else p
        p.catIds = p.catIds if p.useCats == 1 else [-1]
        num_t, num_r = len(p.iouThrs), len(p.recThrs)
        num_k = len(p.catIds) if p.useCats else 1
        num_a, num_m = len(p.areaRng), len(p.maxDets)
        precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
        recall = -np.ones((num_t, num_k, num_a, num_m))
        scores = -np.ones((num_t, num_r, num_k, num_a, num_m))
        rec_thrs = np.asarray(p.recThrs)

        det, gt = self.det_results, self.gt_results
        # score descending, then image order, then rank inside the image (a stable sort of the
        # per-image lists concatenated in image order)
        order = np.lexsort((det["rank"], det["img_pos"], -det["score"], det["cat_pos"]))
        det_cat = det["cat_pos"][order]
        bounds = np.searchsorted(det_cat, np.arange(num_k + 1), side="left")
        # non-ignored ground truth per category and area range
        npig_all = np.zeros((num_k, num_a), dtype=np.int64)
        np.add.at(npig_all, gt["cat_pos"], ~gt["ignore"])

        for k in range(num_k):
            idx = order[bounds[k] : bounds[k + 1]]
            for a in range(num_a):
                npig = int(npig_all[k, a])
                if npig == 0:
                    continue
                for m, max_det in enumerate(p.maxDets):
                    sel = idx[det["rank"][idx] < max_det]
                    nd = len(sel)
                    dtm = det["matched"][sel, a].T  # (T, nd)
                    dtig = det["ignored"][sel, a].T
                    tps = dtm & ~dtig
                    fps = ~dtm & ~dtig
                    tp_sum = np.cumsum(tps, axis=1).astype(float)
                    fp_sum = np.cumsum(fps, axis=1).astype(float)
                    rc = tp_sum / npig
                    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                    recall[:, k, a, m] = rc[:, -1] if nd else 0
                    if nd == 0:
                        precision[:, :, k, a, m] = 0
                        scores[:, :, k, a, m] = 0
                        continue
                    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                    dt_scores = det["score"][sel]
                    for t in range(num_t):
                        inds = np.searchsorted(rc[t], rec_thrs, side="left")
                        valid = inds < nd
                        inds = np.minimum(inds, nd - 1)
                        precision[t, :, k, a, m] = np.where(valid, pr[t, inds], 0)
                        scores[t, :, k, a, m] = np.where(valid, dt_scores[inds], 0)
        self.eval = {
            "params": p,
            "counts": [num_t, num_r, num_k, num_a, num_m],
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": precision,
            "recall": recall,
            "scores": scores,
        }
        logger.debug("COCOeval_opt.accumulate: %.2fs", time.time() - tic)

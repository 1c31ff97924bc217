"""Non-maximum suppression for axis-aligned and rotated boxes, in pure PyTorch.

Results equal torchvision's (``nms``, ``batched_nms``) and Detectron2's (``nms_rotated``,
``batched_nms_rotated``) CPU kernels exactly: same IoU formula evaluated in the same floating-point
order, same comparison, same stable score order.

How it is fast without a compiled kernel: greedy NMS only needs the pairs whose IoU exceeds the
threshold, and for a threshold t >= 0 such a pair must overlap well along x (``IoU <= overlap_x /
width`` of either box). A sort-and-sweep along x1 therefore lists a small superset of those pairs,
the exact IoU is evaluated on them only, and the greedy order is resolved on that sparse graph by a
few vectorised relaxation rounds (a box is kept once all higher-scored neighbours are decided and
none of them is kept). Thresholds < 0 or NaN, or inputs whose boxes overlap so much that the pair
list would be huge, go through a blocked dense greedy instead.

Shape shorthand: N boxes, P candidate pairs, E suppression edges (pairs with IoU above threshold).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["batched_nms", "batched_nms_rotated", "nms", "nms_rotated"]

# Above this many candidate pairs, the sweep's pairs are evaluated in chunks of this size.
_PAIR_CHUNK = 1 << 22
# Above this many candidate pairs in total, boxes overlap heavily, so few survive: the blocked
# dense greedy (cost ~ kept * N) is then cheaper than listing the pairs.
_MAX_SWEEP_PAIRS = 1 << 25
# Rows of the sorted boxes resolved together by the blocked dense greedy.
_DENSE_BLOCK = 256
# torchvision's batched_nms switches from the coordinate trick to a loop over classes above this
# many box coordinates (CPU / other devices); both give slightly different float results, so we
# follow the same rule.
_TRICK_MAX_NUMEL = {"cpu": 4000}
_TRICK_MAX_NUMEL_DEFAULT = 20000


# ------------------------------------------------------------------------------------------------
# input checks and helpers
# ------------------------------------------------------------------------------------------------
def _check_inputs(
    fn: str, boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, box_dim: int
) -> None:
    if not isinstance(boxes, torch.Tensor) or not isinstance(scores, torch.Tensor):
        raise TypeError(f"{fn}: boxes and scores must be Tensors")
    if boxes.dim() != 2 or boxes.shape[1] != box_dim:
        raise ValueError(f"{fn}: boxes must have shape (N, {box_dim}), got {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"{fn}: scores must have shape ({boxes.shape[0]},) to match boxes, "
            f"got {tuple(scores.shape)}"
        )
    if not boxes.is_floating_point() or not scores.is_floating_point():
        raise TypeError(
            f"{fn}: boxes and scores must be floating point, got {boxes.dtype} and {scores.dtype}"
        )
    if boxes.device != scores.device:
        raise ValueError(f"{fn}: boxes on {boxes.device} but scores on {scores.device}")
    if isinstance(iou_threshold, torch.Tensor):
        if iou_threshold.numel() != 1:
            raise ValueError(f"{fn}: iou_threshold must be a scalar")
    elif not isinstance(iou_threshold, int | float):
        raise TypeError(f"{fn}: iou_threshold must be a float, got {type(iou_threshold).__name__}")


def _check_idxs(fn: str, boxes: torch.Tensor, idxs: torch.Tensor) -> None:
    if not isinstance(idxs, torch.Tensor):
        raise TypeError(f"{fn}: idxs must be a Tensor")
    if idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"{fn}: idxs must have shape ({boxes.shape[0]},) to match boxes, "
            f"got {tuple(idxs.shape)}"
        )
    if idxs.is_floating_point() or idxs.is_complex():
        raise TypeError(f"{fn}: idxs must be an integer tensor, got {idxs.dtype}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half precision boxes are evaluated in float32 (their values are exactly representable).
    return torch.float64 if dtype == torch.float64 else torch.float32


def _threshold_below(t: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` value <= t: for IoUs of that dtype, ``iou > t`` (compared in double, as
    the C++ kernels do) is then ``iou > result`` compared in ``dtype``."""
    if dtype == torch.float64 or math.isnan(t) or math.isinf(t):
        return t
    t32 = torch.tensor(t, dtype=dtype)
    if t32.item() > t:
        t32 = torch.nextafter(t32, torch.tensor(-math.inf, dtype=dtype))
    return t32.item()


def _threshold_at_or_below(t: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` value < t: ``iou >= t`` (in double) is ``iou > result`` in
    ``dtype``."""
    below = _threshold_below(t, dtype)
    if below == t and not math.isinf(t) and not math.isnan(t):
        below = torch.nextafter(
            torch.tensor(t, dtype=dtype), torch.tensor(-math.inf, dtype=dtype)
        ).item()
    return below


def _sort_scores(scores: torch.Tensor, stable: bool) -> torch.Tensor:
    return torch.sort(scores, dim=0, descending=True, stable=stable)[1]


# ------------------------------------------------------------------------------------------------
# greedy resolution
# ------------------------------------------------------------------------------------------------
def _greedy_from_edges(n: int, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Greedy NMS on a suppression graph given in score ranks.

    Args:
        n: number of boxes, ranked 0 (best) .. n-1.
        src, dst (Tensor[E] int64): an edge means "rank src suppresses rank dst if src is kept";
            src < dst always.

    Returns:
        Tensor[n] bool: kept ranks.
    """
    device = src.device
    undecided, kept, suppressed = 0, 1, 2
    state = torch.zeros(n, dtype=torch.int8, device=device)
    state[torch.bincount(dst, minlength=n) == 0] = kept
    while True:
        # Boxes with a kept higher-scored neighbour are suppressed.
        state[dst[state[src] == kept]] = suppressed
        # Edges from suppressed boxes never matter; edges into decided boxes no longer do.
        live = (state[src] != suppressed) & (state[dst] == undecided)
        src, dst = src[live], dst[live]
        if src.numel() == 0:
            state[state == undecided] = kept
            break
        # Undecided boxes whose every higher-scored neighbour was suppressed are kept.
        free = (state == undecided) & (torch.bincount(dst, minlength=n) == 0)
        state[free] = kept
    return state == kept


def _greedy_within_block(sup: torch.Tensor) -> torch.Tensor:
    """Greedy NMS inside a small block: ``sup (Tensor[k, k] bool)``, strictly upper triangular,
    ``sup[i, j]`` = i suppresses j when kept. Returns Tensor[k] bool of kept boxes.

    Jacobi iteration of ``keep_j = not any_i(sup[i, j] and keep_i)``: after r rounds every box
    whose chain of possible suppressors is shorter than r is final, so it reaches greedy's answer.
    """
    keep = torch.ones(sup.shape[0], dtype=torch.bool, device=sup.device)
    if not bool(sup.any()):
        return keep
    supf = sup.to(torch.float32)
    for _ in range(sup.shape[0] + 1):
        new_keep = (keep.to(torch.float32) @ supf) == 0
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def _greedy_dense(
    n: int, iou_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Blocked exact greedy NMS on boxes already sorted by score.

    Args:
        n: number of boxes.
        iou_fn: ``iou_fn(rows, cols)`` with rank index tensors returns Tensor[len(rows), len(cols)]
            bool, True where the row box suppresses the column box.

    Returns:
        Tensor[n] bool: kept ranks. Cost ~ (number kept) * n comparisons.
    """
    removed = torch.zeros(n, dtype=torch.bool, device=device)
    for start in range(0, n, _DENSE_BLOCK):
        end = min(n, start + _DENSE_BLOCK)
        alive = torch.arange(start, end, device=device)[~removed[start:end]]
        if alive.numel() == 0:
            continue
        sup = torch.triu(iou_fn(alive, alive), diagonal=1)
        keep = _greedy_within_block(sup)
        removed[alive[~keep]] = True
        kept = alive[keep]
        if end < n:
            later = torch.arange(end, n, device=device)
            later = later[~removed[end:]]
            if later.numel() > 0:
                removed[later] |= iou_fn(kept, later).any(0)
    return ~removed


# ------------------------------------------------------------------------------------------------
# axis-aligned boxes
# ------------------------------------------------------------------------------------------------
def _box_iou_pairs(boxes: torch.Tensor, areas: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """IoU of boxes[a] with boxes[b] elementwise, in torchvision's exact float order."""
    ba = boxes.index_select(0, a)  # (P, 4)
    bb = boxes.index_select(0, b)
    lt = torch.maximum(ba[:, :2], bb[:, :2])
    rb = torch.minimum(ba[:, 2:], bb[:, 2:])
    wh = (rb - lt).clamp_(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (areas.index_select(0, a) + areas.index_select(0, b) - inter)


def _box_iou_matrix(boxes: torch.Tensor, areas: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """IoU of boxes[a] (rows) with boxes[b] (columns), Tensor[len(a), len(b)]."""
    ba = boxes.index_select(0, a)[:, None, :]  # (A, 1, 4)
    bb = boxes.index_select(0, b)[None, :, :]  # (1, B, 4)
    lt = torch.maximum(ba[..., :2], bb[..., :2])
    rb = torch.minimum(ba[..., 2:], bb[..., 2:])
    wh = (rb - lt).clamp_(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (areas.index_select(0, a)[:, None] + areas.index_select(0, b)[None, :] - inter)


def _sweep_candidate_count(key: torch.Tensor, reach: torch.Tensor):
    """Sort ``key`` and, for each sorted position p, count the later positions q with
    key[q] <= reach[p]. Returns (perm, counts) with counts (Tensor[N] int64)."""
    skey, perm = torch.sort(key, stable=True)
    end = torch.searchsorted(skey, reach.index_select(0, perm), right=True)
    pos = torch.arange(key.shape[0], device=key.device)
    counts = (end - pos - 1).clamp_(min=0)
    return perm, counts


def _expand_pairs(counts: torch.Tensor, start: int, stop: int):
    """Candidate pairs (p, q) of sorted positions p in [start, stop): q = p+1 .. p+counts[p]."""
    c = counts[start:stop]
    p = torch.repeat_interleave(torch.arange(start, stop, device=counts.device), c)
    offsets = torch.cumsum(c, 0) - c
    q = torch.arange(p.shape[0], device=counts.device) - offsets.repeat_interleave(c) + p + 1
    return p, q


def _sweep_edges(
    key: torch.Tensor,
    reach: torch.Tensor,
    rank: torch.Tensor,
    pair_test: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Suppression edges in rank space from a sweep along ``key``; None if the sweep would list
    more than ``_MAX_SWEEP_PAIRS`` candidates.

    Args:
        key, reach (Tensor[N] float64): a box q can only pair with p (key[p] <= key[q]) if
            key[q] <= reach[p].
        rank (Tensor[N] int64): score rank of each box.
        pair_test: ``pair_test(a, b)`` -> Tensor[P] bool, whether boxes a and b (original
            indices) suppress one another.
    """
    perm, counts = _sweep_candidate_count(key, reach)
    cum = torch.cumsum(counts, 0)
    total = int(cum[-1]) if cum.numel() else 0
    if total > _MAX_SWEEP_PAIRS:
        return None
    srcs, dsts = [], []
    start, n = 0, key.shape[0]
    while start < n and total > 0:
        # Largest stop such that the pairs of positions [start, stop) fit in one chunk.
        done = int(cum[start - 1]) if start > 0 else 0
        stop = int(torch.searchsorted(cum, done + _PAIR_CHUNK, right=True))
        stop = min(n, max(stop, start + 1))
        p, q = _expand_pairs(counts, start, stop)
        a, b = perm.index_select(0, p), perm.index_select(0, q)
        hit = pair_test(a, b)
        a, b = a[hit], b[hit]
        ra, rb = rank.index_select(0, a), rank.index_select(0, b)
        srcs.append(torch.minimum(ra, rb))
        dsts.append(torch.maximum(ra, rb))
        start = stop
    if not srcs:
        empty = torch.empty(0, dtype=torch.int64, device=key.device)
        return empty, empty
    return torch.cat(srcs), torch.cat(dsts)


def _nms_impl(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact greedy NMS; if ``groups`` is given, only boxes of the same group suppress each other
    (IoU on the original coordinates, as a loop over groups would compute)."""
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    order = _sort_scores(scores, stable=True)
    if n == 1:
        return order
    dtype = _compute_dtype(boxes.dtype)
    boxes = boxes.to(dtype).contiguous()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    t = float(iou_threshold)
    t_eff = _threshold_below(t, dtype)

    keep_rank = None
    if t >= 0:  # also False for NaN
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n, device=device)
        x1 = boxes[:, 0].double()
        w = boxes[:, 2].double() - x1
        # IoU > t implies x-overlap > t * width of either box, so along x1-sorted order a partner
        # lies within (1 - t) * width; the slack covers float rounding of the IoU.
        reach = x1 + (1.0 - min(t, 1.0)) * w + 1e-5 * w.abs() + 1e-9 * x1.abs()
        key = x1
        if groups is not None:
            span = float((boxes[:, 2].double() - x1).abs().max()) + float(x1.abs().max())
            span = 2.0 ** math.ceil(math.log2(4 * span + 4))
            shift = groups.to(torch.float64) * span
            key, reach = key + shift, reach + shift
        # NaN coordinates never suppress; keep them out of the binary search.
        reach = torch.where(torch.isnan(key), -math.inf, reach)
        key = torch.nan_to_num(key, nan=math.inf)

        def pair_test(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            hit = _box_iou_pairs(boxes, areas, a, b) > t_eff
            if groups is not None:
                hit &= groups.index_select(0, a) == groups.index_select(0, b)
            return hit

        edges = _sweep_edges(key, reach, rank, pair_test)
        if edges is not None:
            keep_rank = _greedy_from_edges(n, *edges)

    if keep_rank is None:
        sorted_boxes = boxes.index_select(0, order)
        sorted_areas = areas.index_select(0, order)
        sorted_groups = groups.index_select(0, order) if groups is not None else None

        def iou_fn(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            hit = _box_iou_matrix(sorted_boxes, sorted_areas, r, c) > t_eff
            if sorted_groups is not None:
                hit &= sorted_groups[r][:, None] == sorted_groups[c][None, :]
            return hit

        keep_rank = _greedy_dense(n, iou_fn, device)
    return order[keep_rank]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (same results as ``torchvision.ops.nms``).

    Boxes are visited by decreasing score (ties in input order); a box is dropped if its IoU with
    an already kept box is greater than ``iou_threshold``. IoU uses continuous coordinates
    (area = (x1 - x0) * (y1 - y0), no +1).

    Args:
        boxes (Tensor[N, 4]): x0, y0, x1, y1 in absolute pixels, floating point (half precision is
            evaluated in float32).
        scores (Tensor[N]): floating point scores.
        iou_threshold (float): boxes with IoU > iou_threshold are suppressed.

    Returns:
        Tensor[K] int64: indices of the kept boxes, sorted by decreasing score.
    """
    _check_inputs("nms", boxes, scores, iou_threshold, 4)
    return _nms_impl(boxes, scores, float(iou_threshold))


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS done independently per category (same results as Detectron2's ``batched_nms``).

    Like torchvision, small inputs use the coordinate-offset trick (boxes of category c are
    shifted by ``c * (max coordinate + 1)`` and one NMS runs on all of them), large inputs an
    independent NMS per category; both are computed here without a Python loop over categories.

    Args:
        boxes (Tensor[N, 4]): x0, y0, x1, y1 in absolute pixels (evaluated in float32, like
            Detectron2, since half precision lacks the range for the offset trick).
        scores (Tensor[N]): scores.
        idxs (Tensor[N] int): category of each box.
        iou_threshold (float): boxes with IoU > iou_threshold are suppressed.

    Returns:
        Tensor[K] int64: indices of the kept boxes, sorted by decreasing score.
    """
    _check_inputs("batched_nms", boxes, scores, iou_threshold, 4)
    _check_idxs("batched_nms", boxes, idxs)
    boxes = boxes.float()
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    limit = _TRICK_MAX_NUMEL.get(boxes.device.type, _TRICK_MAX_NUMEL_DEFAULT)
    if boxes.numel() > limit and not torch.jit.is_tracing():
        return _nms_impl(boxes, scores, float(iou_threshold), groups=idxs)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return _nms_impl(boxes + offsets[:, None], scores, float(iou_threshold))


# ------------------------------------------------------------------------------------------------
# rotated boxes
# ------------------------------------------------------------------------------------------------
def nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS for rotated boxes (same results as Detectron2's ``nms_rotated``).

    A box is dropped if its rotated IoU with an already kept box is >= ``iou_threshold`` (note
    ``>=``, as in Detectron2's kernel).

    Args:
        boxes (Tensor[N, 5]): cx, cy, w, h, angle in degrees (counter-clockwise).
        scores (Tensor[N]): scores.
        iou_threshold (float): IoU threshold.

    Returns:
        Tensor[K] int64: indices of the kept boxes, sorted by decreasing score.
    """
    _check_inputs("nms_rotated", boxes, scores, iou_threshold, 5)
    return _nms_rotated_impl(boxes, scores, float(iou_threshold))


def _nms_rotated_impl(boxes: torch.Tensor, scores: torch.Tensor, t: float) -> torch.Tensor:
    from .rotated_boxes import pairwise_iou_rotated

    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    order = _sort_scores(scores, stable=True)
    if n == 1:
        return order
    dtype = _compute_dtype(boxes.dtype)
    sorted_boxes = boxes.to(dtype).index_select(0, order)
    t_eff = _threshold_at_or_below(t, dtype)

    def iou_fn(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return pairwise_iou_rotated(sorted_boxes[r], sorted_boxes[c]) > t_eff

    keep_rank = _greedy_dense(n, iou_fn, device)
    return order[keep_rank]


def batched_nms_rotated(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Rotated NMS done independently per category (Detectron2's ``batched_nms_rotated``).

    Boxes are shifted by a per-category offset larger than the extent of all boxes, so boxes of
    different categories never overlap, and one ``nms_rotated`` runs on all of them.

    Args:
        boxes (Tensor[N, 5]): cx, cy, w, h, angle in degrees (evaluated in float32).
        scores (Tensor[N]): scores.
        idxs (Tensor[N] int): category of each box.
        iou_threshold (float): IoU threshold (suppress at IoU >= threshold).

    Returns:
        Tensor[K] int64: indices of the kept boxes, sorted by decreasing score.
    """
    _check_inputs("batched_nms_rotated", boxes, scores, iou_threshold, 5)
    _check_idxs("batched_nms_rotated", boxes, idxs)
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()
    # Using the minimum as well as the maximum keeps negative coordinates apart too.
    max_coordinate = (
        torch.max(boxes[:, 0], boxes[:, 1]) + torch.max(boxes[:, 2], boxes[:, 3]) / 2
    ).max()
    min_coordinate = (
        torch.min(boxes[:, 0], boxes[:, 1]) - torch.max(boxes[:, 2], boxes[:, 3]) / 2
    ).min()
    offsets = idxs.to(boxes) * (max_coordinate - min_coordinate + 1)
    boxes_for_nms = boxes.clone()
    boxes_for_nms[:, :2] += offsets[:, None]
    return _nms_rotated_impl(boxes_for_nms, scores, float(iou_threshold))

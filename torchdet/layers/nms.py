"""Non-maximum suppression for axis-aligned and rotated boxes, in pure PyTorch.

Results equal torchvision's CPU kernels (``nms``, ``batched_nms``) exactly: same IoU formula
evaluated in the same floating-point order, same comparison, same stable score order. The rotated
versions follow Detectron2's kernels (``>=`` comparison); their IoU comes from
``rotated_boxes.iou_rotated_pairs`` (float64, exact polygon clipping), so only an IoU within
float32 rounding of the threshold could be decided differently from Detectron2's float32 kernel.

How it is fast without a compiled kernel: greedy NMS only needs the pairs whose IoU exceeds the
threshold, and for a threshold t >= 0 such a pair must overlap well along both axes (``IoU <=
overlap_x / width`` of either box, likewise along y). A sort-and-sweep along x0 (per class, and in
bands along y0 where boxes are dense) therefore lists a small superset of those pairs, the exact
IoU is evaluated on them only, and the greedy order is resolved on that sparse graph by a few
vectorised relaxation rounds (a box is kept once all higher-scored neighbours are decided and none
of them is kept), finishing long suppression chains block by block in score order. Thresholds < 0
or NaN, or inputs whose boxes overlap so much that the pair list would be huge, go through a
blocked dense greedy instead (cost ~ kept boxes x N).

Shape shorthand: N boxes, P candidate pairs, E suppression edges (pairs with IoU above threshold).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import torch

from .rotated_boxes import iou_rotated_pairs, pairwise_iou_rotated
from .tracing import nms_for_tracing

__all__ = ["batched_nms", "batched_nms_rotated", "nms", "nms_rotated"]

# Candidate pairs are evaluated in chunks of about this many: small enough to stay in cache and
# below ATen's parallel grain (32768), so elementwise ops run serially; on a shared CPU a 2-thread
# parallel region per op stalls whenever the other thread is descheduled.
_PAIR_CHUNK = 1 << 14
# Above this many candidate pairs in total, boxes overlap heavily, so few survive: the blocked
# dense greedy (cost ~ kept * N) is then cheaper than listing the pairs.
_MAX_SWEEP_PAIRS = 1 << 25
# The sweep bins boxes into bands along y as well when sweeping along x alone lists more than
# this many candidate pairs per box.
_BAND_PAIRS_PER_BOX = 32
# Rows of the sorted boxes resolved together by the blocked dense greedy.
_DENSE_BLOCK = 256
# Relaxation rounds on the suppression graph before the rest is resolved block by block, and the
# block size then.
_RELAX_ROUNDS = 24
_SEQ_BLOCK = 64
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
    if idxs.device != boxes.device:
        raise ValueError(f"{fn}: boxes on {boxes.device} but idxs on {idxs.device}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half precision boxes are evaluated in float32 (their values are exactly representable).
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=64)
def _threshold_below(t: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` value <= t: for IoUs of that dtype, ``iou > t`` (compared in double, as
    the C++ kernels do) is then ``iou > result`` compared in ``dtype``."""
    if dtype == torch.float64 or math.isnan(t) or math.isinf(t):
        return t
    t32 = torch.tensor(t, dtype=dtype)
    if t32.item() > t:
        t32 = torch.nextafter(t32, torch.tensor(-math.inf, dtype=dtype))
    return t32.item()


@functools.lru_cache(maxsize=64)
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

    Rounds of vectorised relaxation decide every box whose higher-scored neighbours are all
    decided; a few rounds settle typical inputs. Long suppression chains (each decision depending
    on the previous one) would need one round per link, so after ``_RELAX_ROUNDS`` rounds the
    undecided rest is finished block by block in score order.

    Args:
        n: number of boxes, ranked 0 (best) .. n-1.
        src, dst (Tensor[E] int64): an edge means "rank src suppresses rank dst if src is kept";
            src < dst always.

    Returns:
        Tensor[n] bool: kept ranks.
    """
    # Index ops below are index_select / masked_select / index_fill_ / masked_fill_ rather than
    # advanced indexing: on CPU those run serially on these sizes, and a 2-thread parallel region
    # per call stalls badly when the CPU is shared.
    device = src.device
    undecided, kept, suppressed = 0, 1, 2
    state = torch.zeros(n, dtype=torch.int8, device=device)
    state.masked_fill_(torch.bincount(dst, minlength=n) == 0, kept)

    def suppress_and_prune(src: torch.Tensor, dst: torch.Tensor):
        # Boxes with a kept higher-scored neighbour are suppressed.
        state.index_fill_(0, dst.masked_select(state.index_select(0, src) == kept), suppressed)
        # Edges from suppressed boxes never matter; edges into decided boxes no longer do. What
        # is left only links undecided boxes.
        src_state = state.index_select(0, src)
        live = (src_state != suppressed) & (state.index_select(0, dst) == undecided)
        return src.masked_select(live), dst.masked_select(live)

    for _ in range(_RELAX_ROUNDS):
        src, dst = suppress_and_prune(src, dst)
        if src.numel() == 0:
            break
        # Undecided boxes whose every higher-scored neighbour was suppressed are kept.
        state.masked_fill_((state == undecided) & (torch.bincount(dst, minlength=n) == 0), kept)
    else:
        src, dst = suppress_and_prune(src, dst)
        if src.numel() > 0:
            rest = torch.nonzero(state == undecided)[:, 0]
            rest_kept = _greedy_sequential_blocks(n, rest, src, dst)
            rest_state = torch.where(rest_kept, kept, suppressed).to(torch.int8)
            state.scatter_(0, rest, rest_state)
    state.masked_fill_(state == undecided, kept)
    return state == kept


def _greedy_sequential_blocks(
    n: int, nodes: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
) -> torch.Tensor:
    """Greedy NMS restricted to ``nodes`` (sorted ranks) and edges among them, resolved in
    blocks of ``_SEQ_BLOCK`` consecutive nodes: earlier blocks are final when a block starts."""
    m = nodes.shape[0]
    device = nodes.device
    local = torch.full((n,), -1, dtype=torch.int64, device=device)
    local.scatter_(0, nodes, torch.arange(m, device=device))
    ls, ld = local.index_select(0, src), local.index_select(0, dst)
    ld, by_dst = torch.sort(ld, stable=True)
    ls = ls.index_select(0, by_dst)
    starts = torch.arange(0, m + _SEQ_BLOCK, _SEQ_BLOCK, device=device).clamp_(max=m)
    bounds = torch.searchsorted(ld, starts).tolist()
    keep = torch.zeros(m, dtype=torch.bool, device=device)
    for k, b0 in enumerate(range(0, m, _SEQ_BLOCK)):
        size = min(m, b0 + _SEQ_BLOCK) - b0
        s_blk = ls[bounds[k] : bounds[k + 1]] - b0
        d_blk = ld[bounds[k] : bounds[k + 1]] - b0
        inside = s_blk >= 0
        # Suppressed by a kept box of an earlier block.
        outside = ~inside
        by_kept = keep.index_select(0, s_blk.masked_select(outside) + b0)
        alive = torch.ones(size, dtype=torch.bool, device=device)
        alive.index_fill_(0, d_blk.masked_select(outside).masked_select(by_kept), False)
        sup = torch.zeros(size * size, dtype=torch.bool, device=device)
        flat = s_blk.masked_select(inside) * size + d_blk.masked_select(inside)
        sup.index_fill_(0, flat, True)
        keep[b0 : b0 + size] = _greedy_within_block(sup.view(size, size), alive)
    return keep


def _greedy_within_block(sup: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy NMS inside a small block: ``sup (Tensor[k, k] bool)``, strictly upper triangular,
    ``sup[i, j]`` = i suppresses j when kept; ``alive (Tensor[k] bool)`` marks boxes not already
    suppressed from outside. Returns Tensor[k] bool of kept boxes.

    Jacobi iteration of ``keep_j = alive_j and not any_i(sup[i, j] and keep_i)``: after r rounds
    every box whose chain of possible suppressors is shorter than r is final, so it reaches
    greedy's answer.
    """
    keep = torch.ones(sup.shape[0], dtype=torch.bool, device=sup.device)
    if alive is not None:
        keep &= alive
    if not bool(sup.any()):
        return keep
    supf = sup.to(torch.float32)
    for _ in range(sup.shape[0] + 1):
        new_keep = (keep.to(torch.float32) @ supf) == 0
        if alive is not None:
            new_keep &= alive
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
        alive = torch.arange(start, end, device=device).masked_select(~removed[start:end])
        if alive.numel() == 0:
            continue
        sup = torch.triu(iou_fn(alive, alive), diagonal=1)
        keep = _greedy_within_block(sup)
        removed.index_fill_(0, alive.masked_select(~keep), True)
        kept = alive.masked_select(keep)
        if end < n:
            later = torch.arange(end, n, device=device).masked_select(~removed[end:])
            if later.numel() > 0:
                hit = iou_fn(kept, later).any(0)
                removed.index_fill_(0, later.masked_select(hit), True)
    return ~removed


# ------------------------------------------------------------------------------------------------
# axis-aligned boxes
# ------------------------------------------------------------------------------------------------
def _box_iou_pairs(boxes: torch.Tensor, areas: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """IoU of boxes[a] with boxes[b] elementwise, in torchvision's exact float order.

    Args:
        boxes (Tensor[N, 4]): contiguous x0, y0, x1, y1.
        areas (Tensor[N]): box areas.
        a, b (Tensor[P] int64): box indices.
    """
    if boxes.dtype == torch.float32:
        # One 16-byte gather per box instead of four 4-byte ones.
        packed = boxes.view(torch.complex128).view(-1)
        ba = packed.index_select(0, a).view(torch.float32).view(-1, 4)
        bb = packed.index_select(0, b).view(torch.float32).view(-1, 4)
    else:
        ba, bb = boxes.index_select(0, a), boxes.index_select(0, b)
    w = torch.minimum(ba[:, 2], bb[:, 2]).sub_(torch.maximum(ba[:, 0], bb[:, 0]))
    h = torch.minimum(ba[:, 3], bb[:, 3]).sub_(torch.maximum(ba[:, 1], bb[:, 1]))
    inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
    union = areas.index_select(0, a).add_(areas.index_select(0, b)).sub_(inter)
    return inter.div_(union)


def _box_iou_matrix(boxes: torch.Tensor, areas: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """IoU of boxes[a] (rows) with boxes[b] (columns), Tensor[len(a), len(b)]."""
    ba = boxes.index_select(0, a)[:, None, :]  # (A, 1, 4)
    bb = boxes.index_select(0, b)[None, :, :]  # (1, B, 4)
    lt = torch.maximum(ba[..., :2], bb[..., :2])
    rb = torch.minimum(ba[..., 2:], bb[..., 2:])
    wh = (rb - lt).clamp_(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (areas.index_select(0, a)[:, None] + areas.index_select(0, b)[None, :] - inter)


def _sweep_pairs(
    x0: torch.Tensor,
    y0: torch.Tensor,
    reach: torch.Tensor,
    band: float,
    valid: torch.Tensor,
    groups: torch.Tensor | None,
) -> tuple[torch.Tensor, Iterator[tuple[torch.Tensor, torch.Tensor]]] | None:
    """Candidate pairs of boxes that may suppress each other, by a (banded) sort-and-sweep.

    Boxes are sorted by (group, x0); box p pairs with each later box q of its group with
    ``x0[q] <= reach[p]``. Where that lists many pairs (dense boxes), boxes are also binned by
    ``y0`` into bands of height ``band``, and p pairs only with boxes of its own or an adjacent
    band. The caller must guarantee that any two boxes that may suppress each other satisfy
    ``|y0[p] - y0[q]| < band`` and, for the one with the smaller x0, ``x0[q] <= reach[p]``.
    Every such pair is listed at least once (ties across bands twice).

    Args:
        x0, y0, reach (Tensor[N] float64): finite where ``valid``.
        band (float): positive band height.
        valid (Tensor[N] bool): boxes that can take part in a suppression at all.
        groups (Tensor[N] int, optional): only boxes of the same group pair up.

    Returns:
        ``(perm, chunks)``: the sort permutation (Tensor[N] int64) and an iterator over chunks
        ``(a, b)`` of pairs given as positions in that order (box ``perm[a]`` with box
        ``perm[b]``, Tensor[P] int64 each); or None if there would be more than
        ``_MAX_SWEEP_PAIRS`` pairs.
    """
    device = x0.device
    n = x0.shape[0]
    zero = torch.zeros((), dtype=x0.dtype, device=device)
    x0 = torch.where(valid, x0, zero)
    reach = torch.where(valid, reach, zero)
    # Composite key cell * big + x0 with big a power of two above every |x0| and |reach|: sorting
    # by it sorts by (cell, x0), and rounding is monotone, so no range query can miss a pair.
    extent = float(torch.maximum(x0.abs().max(), reach.abs().max()))
    big = 2.0 ** math.ceil(math.log2(4.0 * extent + 4.0))
    slack = reach - x0

    def sort_cells(cell: torch.Tensor):
        base = cell.to(torch.float64) * big
        skey, perm = torch.sort(torch.where(valid, base + x0, math.inf), stable=True)
        # Queries in sorted order: nearly sorted values make the binary searches cache-friendly.
        s_base = base.index_select(0, perm)
        s_x0 = x0.index_select(0, perm)
        s_valid = valid.index_select(0, perm)
        return skey, perm, s_base, s_x0, s_x0 + slack.index_select(0, perm), s_valid

    pos = torch.arange(n, device=device)
    cell = groups.to(torch.int64) if groups is not None else torch.zeros_like(pos)
    # Pass 1: one cell per group. Enough unless boxes are dense (many pairs along x alone).
    skey, perm, s_base, s_x0, s_reach, s_valid = sort_cells(cell)
    hi = torch.searchsorted(skey, s_base + s_reach, right=True)
    count = torch.where(s_valid, (hi - pos - 1).clamp_(min=0), 0)
    start = pos + 1
    owner = pos
    total = int(count.sum())
    if total > _BAND_PAIRS_PER_BOX * n + 8192:
        # Pass 2: cells of (group, y0 band); query the own and the two adjacent bands.
        y0 = torch.where(valid, y0, zero)
        y_lo_hi = torch.stack([y0.where(valid, math.inf).min(), y0.where(valid, -math.inf).max()])
        ymin, ymax = y_lo_hi.tolist()
        band = max(band, (ymax - ymin) / 65536.0)  # bounds the number of bands
        cell = torch.floor((y0 - ymin) / band).to(torch.int64) + 1  # 0 and nbands+1 pad
        if groups is not None:
            cell = cell + groups.to(torch.int64) * (int(cell.max()) + 2)
        skey, perm, s_base, s_x0, s_reach, s_valid = sort_cells(cell)
        # One search for all upper ends (bands below, own, above), one for the lower ends.
        below, above = s_base - big, s_base + big
        hi = torch.searchsorted(
            skey, torch.cat([below + s_reach, s_base + s_reach, above + s_reach]), right=True
        )
        lo = torch.searchsorted(skey, torch.cat([below + s_x0, above + s_x0]))
        start = torch.cat([lo[:n], pos + 1, lo[n:]])
        count = torch.where(s_valid.repeat(3), (hi - start).clamp_(min=0), 0)
        owner = pos.repeat(3)
        total = int(count.sum())

    if total > _MAX_SWEEP_PAIRS:
        return None
    cum = torch.cumsum(count, 0)
    # Chunks of whole queries with about _PAIR_CHUNK pairs each (one query may exceed it).
    targets = torch.arange(_PAIR_CHUNK, total + _PAIR_CHUNK, _PAIR_CHUNK, device=device)
    ends = torch.searchsorted(cum, targets, right=True).clamp_(max=count.shape[0])
    bounds = sorted({0, count.shape[0], *ends.tolist()})
    last_of_chunk = torch.tensor(bounds[1:], device=device) - 1
    done = [0, *cum.index_select(0, last_of_chunk).tolist()]  # pairs before each chunk boundary

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(len(bounds) - 1):
            first, last = bounds[k], bounds[k + 1]
            p = done[k + 1] - done[k]
            if p == 0:
                continue
            c = count[first:last]
            # Expand queries into pairs without repeat_interleave (parallel with a tiny grain on
            # CPU): mark where each non-empty query's pairs start, and a running sum gives each
            # pair its query.
            nonempty = torch.nonzero(c)[:, 0]
            c = c.index_select(0, nonempty)
            offset = torch.cumsum(c, 0) - c
            marks = torch.zeros(p, dtype=torch.int64, device=device)
            marks.scatter_add_(0, offset[1:], torch.ones_like(offset[1:]))
            seg = torch.cumsum(marks, 0)
            query = nonempty.index_select(0, seg) + first
            # Sorted position of each pair's partner: its query's start + its index in the range.
            partner = torch.arange(p, device=device).sub_(offset.index_select(0, seg))
            partner += start.index_select(0, query)
            yield owner.index_select(0, query), partner

    return perm, chunks()


def _edges_from_pairs(
    pairs: Iterator[tuple[torch.Tensor, torch.Tensor]],
    rank: torch.Tensor,
    pair_test: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the candidate pairs that pass ``pair_test`` as edges (better rank -> worse rank);
    ``rank`` is indexed like the pairs."""
    srcs, dsts = [], []
    for a, b in pairs:
        hit = pair_test(a, b)
        ra = rank.index_select(0, a.masked_select(hit))
        rb = rank.index_select(0, b.masked_select(hit))
        srcs.append(torch.minimum(ra, rb))
        dsts.append(torch.maximum(ra, rb))
    if not srcs:
        empty = torch.empty(0, dtype=torch.int64, device=rank.device)
        return empty, empty
    return torch.cat(srcs), torch.cat(dsts)


@torch.no_grad()  # indices only: no graph to build
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
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=device))
        x0, y0, x1, y1 = boxes.double().unbind(1)
        w, h = x1 - x0, y1 - y0
        valid = torch.isfinite(boxes).all(1) & (w > 0) & (h > 0)
        # One synchronisation for the scalars: any valid box, largest height and |y0|.
        stats = torch.stack(
            [valid.any().double(), h.where(valid, 0).max(), y0.where(valid, 0).abs().max()]
        )
        any_valid, h_max, y_extent = stats.tolist()
        if not any_valid:
            return order  # nothing can suppress anything
        # IoU > t implies an overlap > t * width (height) of either box, so along x0-sorted order a
        # partner lies within (1 - t) * width, and within (1 - t) * height along y0. The slack
        # covers the float rounding of the IoU.
        slack = 1.0 - t + 1e-5
        reach = x0 + slack * w + 1e-9 * x0.abs()
        band = slack * h_max * (1 + 1e-6) + 1e-9 * y_extent + 1e-30
        sweep = _sweep_pairs(x0, y0, reach, band, valid, groups)
        if sweep is not None:
            perm, pairs = sweep
            s_boxes = boxes.index_select(0, perm)
            s_areas = areas.index_select(0, perm)

            def pair_test(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                # The sweep only pairs boxes of the same group.
                return _box_iou_pairs(s_boxes, s_areas, a, b) > t_eff

            edges = _edges_from_pairs(pairs, rank.index_select(0, perm), pair_test)
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
    if torch.jit.is_tracing():  # export: a graph that holds for any input (see tracing.py)
        return nms_for_tracing(boxes, scores, float(iou_threshold))
    return _nms_impl(boxes, scores, float(iou_threshold))


@torch.no_grad()
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
    if torch.jit.is_tracing():  # export: a graph that holds for any input (see tracing.py)
        return nms_for_tracing(boxes + offsets[:, None], scores, float(iou_threshold))
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


def _rotated_iou_may_reach(
    geometry: torch.Tensor, a: torch.Tensor, b: torch.Tensor, t: float
) -> torch.Tensor:
    """Cheap necessary condition for ``IoU(a, b) >= t`` between rotated boxes (float64).

    IoU <= min(area) / max(area), and the intersection fits in the overlap of the axis-aligned
    hulls and in the overlap of each box with the other's bounding rectangle in its own frame.

    Args:
        geometry (Tensor[11, N]): cx, cy, cos, sin, |w|, |h|, area, then x0, y0, x1, y1 of the
            axis-aligned hull; width axis (cos, -sin) and height axis (sin, cos) in pixel
            coordinates (y down), as in Detectron2.
        a, b (Tensor[P] int64): box pairs.
    """
    ga = [row.index_select(0, a) for row in geometry]  # 11 x (P,): 1-D gathers are fastest
    gb = [row.index_select(0, b) for row in geometry]
    area_a, area_b = ga[6], gb[6]
    need = torch.maximum(area_a, area_b) * t  # an intersection at least this large
    ok = torch.minimum(area_a, area_b) >= need
    ha, hb = ga[7:], gb[7:]
    ow = (torch.minimum(ha[2], hb[2]) - torch.maximum(ha[0], hb[0])).clamp_(min=0)
    oh = (torch.minimum(ha[3], hb[3]) - torch.maximum(ha[1], hb[1])).clamp_(min=0)
    ok &= ow * oh >= need
    dx, dy = gb[0] - ga[0], gb[1] - ga[1]
    cos_d = (ga[2] * gb[2] + ga[3] * gb[3]).abs()  # |cos(theta_b - theta_a)|
    sin_d = (ga[3] * gb[2] - ga[2] * gb[3]).abs()
    for g, sign in ((ga, 1.0), (gb, -1.0)):
        # The other box's center and half extents along this box's width and height axes.
        du = sign * (dx * g[2] - dy * g[3])
        dv = sign * (dx * g[3] + dy * g[2])
        other = gb if sign > 0 else ga
        eu = (cos_d * other[4] + sin_d * other[5]) * 0.5
        ev = (sin_d * other[4] + cos_d * other[5]) * 0.5
        hw, hh = g[4] * 0.5, g[5] * 0.5
        ou = (torch.minimum(hw, du + eu) - torch.maximum(-hw, du - eu)).clamp_(min=0)
        ov = (torch.minimum(hh, dv + ev) - torch.maximum(-hh, dv - ev)).clamp_(min=0)
        ok &= ou * ov >= need
    return ok


@torch.no_grad()
def _nms_rotated_impl(boxes: torch.Tensor, scores: torch.Tensor, t: float) -> torch.Tensor:
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    order = _sort_scores(scores, stable=True)
    if n == 1:
        return order
    dtype = _compute_dtype(boxes.dtype)
    boxes = boxes.to(dtype)
    t_eff = _threshold_at_or_below(t, dtype)

    keep_rank = None
    # With t <= 0 even disjoint boxes suppress each other (IoU 0 >= t): dense path.
    if t > 0:
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=device))
        cx, cy, w, h, angle = boxes.double().unbind(1)
        area = w * h
        # Detectron2 gives IoU 0 for boxes under 1e-14 in area, so they never suppress.
        valid = torch.isfinite(boxes).all(1) & (area >= 1e-14)
        if not bool(valid.any()):
            return order
        theta = angle * (math.pi / 180.0)
        cos, sin = theta.cos().abs(), theta.sin().abs()
        half_w = (cos * w.abs() + sin * h.abs()) * 0.5  # half extents of the axis-aligned hull
        half_h = (sin * w.abs() + cos * h.abs()) * 0.5
        hull_w, hull_h = 2 * half_w, 2 * half_h
        x0, y0 = cx - half_w, cy - half_h
        # inter <= x-overlap * hull height and union >= area, so IoU >= t needs an x-overlap of
        # at least t * area / hull height (likewise along y); slack covers rounding.
        tol = 1e-5 * (hull_w + hull_h) + 1e-9 * (cx.abs() + cy.abs())
        reach = x0 + hull_w - t * area / hull_h + tol
        band_all = hull_h - t * area / hull_w + tol
        band = float(torch.where(valid, band_all, 0).max()) * (1 + 1e-6) + 1e-12
        reach = torch.where(valid, reach, x0)
        sweep = _sweep_pairs(x0, y0, reach, band, valid, None)
        if sweep is not None:
            perm, pairs = sweep
            geometry = torch.stack(
                [cx, cy, theta.cos(), theta.sin(), w.abs(), h.abs(), area]
                + [x0, y0, x0 + hull_w, y0 + hull_h]
            ).index_select(1, perm)
            s_boxes = boxes.index_select(0, perm)

            def pair_test(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                # The exact kernel is costly: first drop pairs that cannot reach IoU t.
                maybe = _rotated_iou_may_reach(geometry, a, b, t * (1 - 1e-6))
                a, b = a.masked_select(maybe), b.masked_select(maybe)
                iou = iou_rotated_pairs(s_boxes.index_select(0, a), s_boxes.index_select(0, b))
                return maybe.masked_scatter(maybe, iou > t_eff)

            edges = _edges_from_pairs(pairs, rank.index_select(0, perm), pair_test)
            keep_rank = _greedy_from_edges(n, *edges)

    if keep_rank is None:
        sorted_boxes = boxes.index_select(0, order)

        def iou_fn(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return pairwise_iou_rotated(sorted_boxes[r], sorted_boxes[c]) > t_eff

        keep_rank = _greedy_dense(n, iou_fn, device)
    return order[keep_rank]


@torch.no_grad()
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

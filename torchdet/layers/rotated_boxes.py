"""Exact IoU between rotated rectangles, vectorised over all box pairs.

Shape shorthand:
    N, M: number of boxes in each set
    P: number of candidate pairs (pairs whose axis-aligned hulls overlap)
    S: the two "sides" of a pair (edges of box 1 clipped to box 2, and the reverse)

The intersection of two convex polygons is computed with Green's theorem: its boundary is the
part of each rectangle's edges that lies inside the other rectangle. Each of the 8 edges of a
pair is clipped against the other rectangle's 4 half-planes (Cyrus-Beck), and an edge
``s + t * e`` clipped to ``[t0, t1]`` adds ``(t1 - t0) * cross(s, e) / 2`` to the area. This
needs no vertex sorting and no per-pair control flow: it is ~40 branch-free elementwise ops
on ``(S, 6, 4, P)`` float64 arrays, with the pair dimension innermost. Pairs whose
axis-aligned hulls are disjoint are skipped, and the rest are processed in chunks.

Boxes sharing an edge (identical boxes, or a box described once with angle a and once with
angle a + 90 and swapped sides) need care: rounding could count the shared edge twice or not
at all. Pairs whose relative angle is within 1e-8 rad of a multiple of 90 degrees are made
exactly parallel, their corner distances below a relative 1e-12 are snapped to zero, and a
shared edge is counted once. Accuracy: ~1e-12 typically; for nearly parallel, extremely thin
boxes (aspect 1:8000, 1e-8 rad apart) the ill-conditioned crossings cost up to ~1e-4.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["pairwise_iou_rotated", "iou_rotated_pairs"]

# Candidate pairs are processed in chunks; peak memory is ~ 500 float64 values per pair.
_CHUNK_CPU = 1 << 12
_CHUNK_GPU = 1 << 18
# The N x M hull-overlap test runs on blocks of rows of at most this many pairs.
_PREFILTER_ELEMENTS = 1 << 24
# Detectron2 returns IoU 0 when either box has an area below this value.
_MIN_AREA = 1e-14
# For parallel pairs: relative tolerance (w.r.t. the pair's coordinate scale) under which a
# corner is treated as lying exactly on the other box's edge line (rounding is ~1e-15).
_REL_TOL = 1e-12
# Relative angles within this many radians of a multiple of 90 degrees are snapped to it
# (balances the geometric change, ~1e-8 * size, against ill-conditioned crossings).
_PARALLEL_TOL = 1e-8
# Guards 0 / 0 in branch-free divisions; far below any nonzero distance of real boxes.
_TINY = 1e-200

# Corner signs along the box's local (u, v) axes, counter-clockwise, with the first two corners
# repeated so that "corner k + 1" and "corner k + 2" of edge k are plain slices (no copies).
_CORNER_SU = (-1.0, 1.0, 1.0, -1.0, -1.0, 1.0)
_CORNER_SV = (-1.0, -1.0, 1.0, 1.0, -1.0, -1.0)


def _check_boxes(boxes: Tensor, name: str) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a Tensor[K, 5], got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[-1] != 5:
        raise ValueError(
            f"{name} must have shape (K, 5) = (cx, cy, w, h, angle_degrees), "
            f"got {tuple(boxes.shape)}"
        )
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {boxes.dtype}")


def _box_frames(boxes: Tensor) -> Tensor:
    """(K, 5) rotated boxes -> (K, 6) cx, cy, cos, sin, w / 2, h / 2.

    Angles are counter-clockwise as seen on screen, with y pointing down (Detectron2's
    convention): the width axis is u = (cos, -sin) and the height axis v = (sin, cos) in
    pixel coordinates.
    """
    theta = boxes[:, 4] * (math.pi / 180.0)
    return torch.stack(
        [boxes[:, 0], boxes[:, 1], theta.cos(), theta.sin(), boxes[:, 2] * 0.5, boxes[:, 3] * 0.5],
        dim=1,
    )


def _axis_aligned_hulls(frames: Tensor) -> Tensor:
    """(K, 6) box frames -> (K, 4) x0, y0, x1, y1 of their axis-aligned bounding boxes."""
    c, s = frames[:, 2].abs(), frames[:, 3].abs()
    hw, hh = frames[:, 4].abs(), frames[:, 5].abs()
    ex = c * hw + s * hh
    ey = s * hw + c * hh
    return torch.stack(
        [frames[:, 0] - ex, frames[:, 1] - ey, frames[:, 0] + ex, frames[:, 1] + ey], dim=1
    )


def _pair_iou(f1: Tensor, f2: Tensor) -> Tensor:
    """IoU of matched pairs of rotated boxes.

    Everything is expressed in box 1's frame (its width axis along x), so both directions of
    the test below derive from the same few numbers: the center offset (pa, pb) and the
    relative rotation (cos_r, sin_r). Both boxes of a pair are handled at once along a "side"
    dimension S = 2: side 0 clips the edges of box 1 to box 2, side 1 the edges of box 2 to
    box 1. The pair dimension P is innermost so every elementwise op runs over long rows.

    Args:
        f1, f2 (Tensor[6, P]): float64 frames (see :func:`_box_frames`, transposed); column i
            of ``f1`` is paired with column i of ``f2``.

    Returns:
        Tensor[P]: float64 IoU.
    """
    c1, s1, hw1, hh1 = f1[2], f1[3], f1[4], f1[5]
    c2, s2, hw2, hh2 = f2[2], f2[3], f2[4], f2[5]
    dx, dy = f2[0] - f1[0], f2[1] - f1[1]
    # Center of box 2 relative to box 1, along box 1's axes u1 = (c1, -s1), v1 = (s1, c1).
    pa = c1 * dx - s1 * dy
    pb = s1 * dx + c1 * dy
    # Box 2's axes in box 1's frame: u2 = (cos_r, sin_r), v2 = (-sin_r, cos_r).
    cos_r = c1 * c2 + s1 * s2
    sin_r = s1 * c2 - c1 * s2
    # Nearly parallel edges (relative angle within 1e-8 rad of a multiple of 90 degrees) are
    # made exactly parallel: then a shared edge line is recognised on both sides alike, where
    # rounding could otherwise count it twice or not at all. Moves corners by <= 1e-8 * size.
    near_0 = sin_r.abs() <= _PARALLEL_TOL
    near_90 = cos_r.abs() <= _PARALLEL_TOL
    cos_r, sin_r = (
        torch.where(near_0, cos_r.sign(), torch.where(near_90, 0.0, cos_r)),
        torch.where(near_90, sin_r.sign(), torch.where(near_0, 0.0, sin_r)),
    )

    # Per side (S, P): center of the clipped box in the reference frame (a0, b0), and the
    # rotation from the clipped box's frame to the reference frame (cos_d, sin_d).
    a0 = torch.stack([-(cos_r * pa + sin_r * pb), pa])
    b0 = torch.stack([sin_r * pa - cos_r * pb, pb])
    cos_d = torch.stack([cos_r, cos_r])
    sin_d = torch.stack([sin_r, -sin_r])
    hw, hh = torch.stack([hw1, hw2]), torch.stack([hh1, hh2])
    hwr, hhr = torch.stack([hw2, hw1])[:, None], torch.stack([hh2, hh1])[:, None]

    # Corner k of the clipped box in the reference frame: (a_k, b_k), (S, 6, P).
    su = f1.new_tensor(_CORNER_SU)[None, :, None]
    sv = f1.new_tensor(_CORNER_SV)[None, :, None]
    a = a0[:, None] + su * (hw * cos_d)[:, None] + sv * (hh * sin_d)[:, None]
    b = b0[:, None] - su * (hw * sin_d)[:, None] + sv * (hh * cos_d)[:, None]
    # Signed distance of corner k outside each half-plane j of the reference box (<= 0:
    # inside), planes +u, -u, +v, -v: (S, 6 corners, 4 planes, P).
    f = torch.stack([a - hwr, -a - hwr, b - hhr, -b - hhr], dim=2)
    # For parallel pairs, snap corners lying on a reference edge line to exactly 0, so that a
    # shared edge is recognised on both sides alike. Soft thresholding (shrink every |f| by
    # tol) does this without data-dependent branches, which are slow on CPU. Other pairs are
    # not snapped: moving a clipping point along an edge by d changes the Green's sum by about
    # d * size, so snapping a nearly (but not) parallel edge would cost far more than rounding.
    scale = (
        torch.maximum(hw1.abs(), hh1.abs())
        + torch.maximum(hw2.abs(), hh2.abs())
        + torch.maximum(dx.abs(), dy.abs())
    )
    tol = torch.where(near_0 | near_90, scale * _REL_TOL, 0.0)
    f = f - f.clamp(min=-tol, max=tol)
    out = f.clamp(min=0.0)  # how far outside, or 0
    inside = out - f  # how far inside, or 0

    # Cyrus-Beck clipping of edge k (corner k -> k + 1) to the reference box: the edge is
    # inside for t in [max_j t_lo, min_j t_hi]. Where the start is outside and the end inside
    # plane j, t_lo is the crossing f0 / (f0 - f1); where the end is outside and the start
    # inside, so is t_hi. An edge with both ends outside gets t_lo = 1 and t_hi = 0: empty.
    # Distances are 0 or far above _TINY, so the guard only turns 0 / 0 into 0.
    out0, out1 = out[:, 0:4], out[:, 1:5]
    in0, in1 = inside[:, 0:4], inside[:, 1:5]
    t_lo = out0 / (out0 + in1 + _TINY)
    t_hi = 1.0 - out1 / (in0 + out1 + _TINY)
    # An edge of box 2 lying on an edge line of box 1 (both ends at distance 0) with box 2 on
    # the inner side (the opposite corner k + 2 inside) coincides with an edge of box 1 of
    # the same orientation: drop it (t_lo = 2) so the shared boundary is counted once.
    on_line = f[1] == 0
    coincident = on_line[0:4] & on_line[1:5] & (f[1, 2:6] < 0)
    t_lo[1] = torch.where(coincident, 2.0, t_lo[1])
    span = (t_hi.amin(dim=2) - t_lo.amax(dim=2)).clamp_(min=0.0)  # (S, 4, P)

    # Green's theorem: an edge s + t * e clipped to [t0, t1] adds
    # cross(s + t0 e, s + t1 e) = (t1 - t0) * cross(s, e). With s = center + local corner,
    # cross(local_k, e_k) = 2 * hw * hh for every edge, and e = 2hw u, 2hh v, -2hw u, -2hh v.
    # Cross products are rotation invariant, so they are taken in box 1's frame, with the
    # origin at the midpoint of the two centers (as Detectron2 does, against cancellation).
    ox = torch.stack([-0.5 * pa, 0.5 * pa])  # (S, P)
    oy = torch.stack([-0.5 * pb, 0.5 * pb])
    ux = torch.stack([torch.ones_like(cos_r), cos_r])
    uy = torch.stack([torch.zeros_like(sin_r), sin_r])
    cross_u = 2 * hw * (ox * uy - oy * ux)  # cross(center, 2 hw u), u = (ux, uy)
    cross_v = 2 * hh * (ox * ux + oy * uy)  # cross(center, 2 hh v), v = (-uy, ux)
    corner_term = 2 * hw * hh
    twice_inter = (
        (span[:, 0] - span[:, 2]) * cross_u
        + (span[:, 1] - span[:, 3]) * cross_v
        + span.sum(dim=1) * corner_term
    ).sum(dim=0)
    inter = (twice_inter * 0.5).clamp_(min=0.0)

    area1 = 4 * hw1 * hh1
    area2 = 4 * hw2 * hh2
    union = area1 + area2 - inter
    degenerate = (area1 < _MIN_AREA) | (area2 < _MIN_AREA)
    iou = inter / union.masked_fill(degenerate, 1.0)
    return iou.masked_fill_(degenerate, 0.0)


def pairwise_iou_rotated(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection-over-union of every pair of rotated boxes.

    Exact for rectangles (up to floating-point rounding); computed in float64 and returned
    in the input dtype. Pairs whose axis-aligned hulls do not overlap are skipped, so sparse
    overlap (the usual case in NMS) costs little beyond an ``N x M`` comparison. Like
    Detectron2's kernel, the result carries no gradient.

    Args:
        boxes1 (Tensor[N, 5]): cx, cy, w, h, angle in degrees (counter-clockwise).
        boxes2 (Tensor[M, 5]): same format, same dtype and device as ``boxes1``.

    Returns:
        Tensor[N, M]: IoU values in [0, 1]. A box with area below 1e-14 has IoU 0 with
        everything, as in Detectron2.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if boxes1.device != boxes2.device:
        raise ValueError(
            f"boxes1 and boxes2 must be on the same device, got {boxes1.device} and {boxes2.device}"
        )
    out_dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    n, m = boxes1.shape[0], boxes2.shape[0]
    out = torch.zeros(n, m, dtype=torch.float64, device=boxes1.device)
    if n == 0 or m == 0:
        return out.to(out_dtype)

    with torch.no_grad():
        frames1 = _box_frames(boxes1.detach().to(torch.float64))
        frames2 = _box_frames(boxes2.detach().to(torch.float64))
        hull1 = _axis_aligned_hulls(frames1)
        hull2 = _axis_aligned_hulls(frames2)
        frames1_t, frames2_t = frames1.t().contiguous(), frames2.t().contiguous()
        # Small chunks stay in CPU cache; on GPUs large chunks amortise kernel launches.
        chunk = _CHUNK_CPU if out.device.type == "cpu" else _CHUNK_GPU
        rows = max(1, _PREFILTER_ELEMENTS // m)
        for r0 in range(0, n, rows):
            h1 = hull1[r0 : r0 + rows]
            overlap = (
                (h1[:, None, 0] <= hull2[None, :, 2])
                & (hull2[None, :, 0] <= h1[:, None, 2])
                & (h1[:, None, 1] <= hull2[None, :, 3])
                & (hull2[None, :, 1] <= h1[:, None, 3])
            )
            idx1, idx2 = overlap.nonzero(as_tuple=True)
            flat = out[r0 : r0 + rows].view(-1)
            for start in range(0, idx1.numel(), chunk):
                i1 = idx1[start : start + chunk]
                i2 = idx2[start : start + chunk]
                flat[i1 * m + i2] = _pair_iou(frames1_t[:, i1 + r0], frames2_t[:, i2])
    return out.to(out_dtype)


def iou_rotated_pairs(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matched pairs of rotated boxes: row i of ``boxes1`` with row i of ``boxes2``.

    The elementwise counterpart of :func:`pairwise_iou_rotated` (same convention and
    accuracy), for callers such as NMS that have already selected candidate pairs.

    Args:
        boxes1 (Tensor[K, 5]): cx, cy, w, h, angle in degrees (counter-clockwise).
        boxes2 (Tensor[K, 5]): same format, same length, dtype and device as ``boxes1``.

    Returns:
        Tensor[K]: IoU values in the promoted input dtype.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            f"boxes1 and boxes2 must have the same length, got {boxes1.shape[0]} and "
            f"{boxes2.shape[0]}"
        )
    if boxes1.device != boxes2.device:
        raise ValueError(
            f"boxes1 and boxes2 must be on the same device, got {boxes1.device} and {boxes2.device}"
        )
    out_dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    k = boxes1.shape[0]
    out = torch.zeros(k, dtype=torch.float64, device=boxes1.device)
    chunk = _CHUNK_CPU if out.device.type == "cpu" else _CHUNK_GPU
    with torch.no_grad():
        frames1 = _box_frames(boxes1.detach().to(torch.float64)).t()
        frames2 = _box_frames(boxes2.detach().to(torch.float64)).t()
        for start in range(0, k, chunk):
            out[start : start + chunk] = _pair_iou(
                frames1[:, start : start + chunk].contiguous(),
                frames2[:, start : start + chunk].contiguous(),
            )
    return out.to(out_dtype)

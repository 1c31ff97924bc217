"""Traceable forms of the data-dependent operators (NMS, RoIAlign), used while a model is traced
for export.

The eager kernels (``nms.py``, ``roi_align.py``) pick their algorithm from the data (sweep vs
dense NMS, RoI chunking by tap count) with Python branches and ``.tolist()``, which a trace would
freeze to the sample input. While tracing they call the functions below instead:

* during ``torch.onnx.export`` (TorchScript-based exporter): an autograd ``Function`` whose
  ``symbolic`` emits the standard ONNX ``NonMaxSuppression`` / ``RoiAlign`` (opset >= 16) nodes,
  so ONNX Runtime runs its own kernels; the Python ``forward`` runs the eager kernel to produce the
  values the rest of the trace needs.
* during ``torch.jit.trace``: small ``torch.jit.script`` functions (dense IoU + greedy loop;
  separable RoIAlign per RoI) which the trace keeps as calls, so the saved TorchScript program
  stays correct for any number of boxes and needs nothing but torch to run.

Shape shorthand: N boxes, K RoIs, C channels, (H, W) feature map, (oh, ow) output bins.
"""

from __future__ import annotations

import contextlib
import functools

import torch

__all__ = [
    "is_onnx_exporting",
    "nms_for_tracing",
    "register_onnx_symbolics",
    "roi_align_for_tracing",
]


def is_onnx_exporting() -> bool:
    """True while ``torch.onnx.export`` traces a model."""
    return bool(torch.onnx.is_in_onnx_export())


@contextlib.contextmanager
def _tracing_paused():
    # Inside a custom op the tracer records nothing, but torch.jit.is_tracing() still says True,
    # which would send the eager kernels back here.
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


@functools.cache
def _scripted(name: str):
    # Compiled on first use: scripting at import would slow every ``import torchdet``.
    return torch.jit.script(globals()[name])


# ------------------------------------------------------------------------------------------------
# NMS
# ------------------------------------------------------------------------------------------------
def _nms_greedy(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    # Same visiting order and IoU arithmetic as torchvision's CPU kernel: stable descending sort,
    # inter / (area_i + area_j - inter), suppression when IoU > threshold.
    boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True)[1]
    b = boxes.index_select(0, order)
    n = b.shape[0]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    # Blocks of rows bound the (block, N) IoU memory; within a block the greedy loop is exact.
    block = 512
    ranks = torch.arange(n, device=boxes.device)
    for start in range(0, n, block):
        end = min(start + block, n)
        rows = b[start:end]
        xx0 = torch.maximum(rows[:, None, 0], b[None, :, 0])
        yy0 = torch.maximum(rows[:, None, 1], b[None, :, 1])
        xx1 = torch.minimum(rows[:, None, 2], b[None, :, 2])
        yy1 = torch.minimum(rows[:, None, 3], b[None, :, 3])
        inter = (xx1 - xx0).clamp(min=0) * (yy1 - yy0).clamp(min=0)
        iou = inter / (areas[start:end, None] + areas[None, :] - inter)
        over = (iou > iou_threshold) & (ranks[None, :] > ranks[start:end, None])
        for i in range(end - start):
            if not bool(suppressed[start + i]):
                suppressed = suppressed | over[i]
    return order[~suppressed]


@torch.library.custom_op("torchdet::nms", mutates_args=())
def _nms_op(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    # A custom op is recorded by the tracer as one node, which the ONNX symbolic below replaces;
    # its values come from the eager kernel.
    from .nms import nms

    with _tracing_paused():
        return nms(boxes, scores, iou_threshold)


@_nms_op.register_fake
def _(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    k = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((k,), dtype=torch.int64)


def _nms_symbolic(g, boxes, scores, iou_threshold):  # noqa: ANN001
    # ONNX NonMaxSuppression: boxes (B, N, 4), scores (B, classes, N) -> (K, 3) rows of
    # (batch, class, box index) in selection order (decreasing score).
    from torch.onnx import symbolic_helper

    t = symbolic_helper._maybe_get_const(iou_threshold, "f")
    boxes = g.op("Unsqueeze", boxes, g.op("Constant", value_t=torch.tensor([0])))
    scores = g.op("Unsqueeze", scores, g.op("Constant", value_t=torch.tensor([0, 1])))
    max_out = g.op("Constant", value_t=torch.tensor([1 << 30], dtype=torch.int64))
    thresh = g.op("Constant", value_t=torch.tensor([t], dtype=torch.float32))
    selected = g.op("NonMaxSuppression", boxes, scores, max_out, thresh)
    return g.op("Gather", selected, g.op("Constant", value_t=torch.tensor(2)), axis_i=1)


def nms_for_tracing(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS recorded as ONNX ``NonMaxSuppression`` (ONNX export) or a scripted greedy loop (trace).

    Args:
        boxes (Tensor[N, 4]): x0, y0, x1, y1.
        scores (Tensor[N]): scores.
        iou_threshold (float): boxes with IoU > iou_threshold are suppressed.

    Returns:
        Tensor[K] int64: kept indices by decreasing score.
    """
    boxes = boxes.float()
    scores = scores.float()
    if is_onnx_exporting():
        return _nms_op(boxes, scores, float(iou_threshold))
    return _scripted("_nms_greedy")(boxes, scores, float(iou_threshold))


# ------------------------------------------------------------------------------------------------
# RoIAlign
# ------------------------------------------------------------------------------------------------
def _axis_weights(
    start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, bins: int, length: int
) -> torch.Tensor:
    """Bilinear weights (K, bins, length) of each bin's samples along one axis, summed over the
    samples of the bin (torchvision's boundary rules)."""
    k = start.shape[0]
    g_max = max(int(grid.max()), 1) if k > 0 else 1
    dtype = start.dtype
    b = torch.arange(bins, device=start.device, dtype=dtype)
    s = torch.arange(g_max, device=start.device, dtype=dtype)
    gridf = grid.to(dtype).clamp(min=1.0)
    # (K, bins, G) sample coordinates
    pos = (
        start[:, None, None]
        + b[None, :, None] * bin_size[:, None, None]
        + (s[None, None, :] + 0.5) * bin_size[:, None, None] / gridf[:, None, None]
    )
    valid = (s[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= float(length))
    pos = pos.clamp(min=0.0)
    low = pos.floor().to(torch.int64)
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    pos = torch.where(at_end, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    w_low = (1.0 - frac) * valid.to(dtype)
    w_high = frac * valid.to(dtype)
    out = torch.zeros(k, bins, length, dtype=dtype, device=start.device)
    out.scatter_add_(2, low, w_low)
    out.scatter_add_(2, high, w_high)
    return out


def _roi_align_separable(
    input: torch.Tensor,
    rois: torch.Tensor,
    oh: int,
    ow: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    n, c, h, w = input.shape
    k = rois.shape[0]
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    if k == 0:
        return torch.zeros((0, c, oh, ow), dtype=input.dtype, device=input.device)
    boxes = rois.to(dtype)
    offset = 0.5 if aligned else 0.0
    scale = torch.tensor(spatial_scale, dtype=dtype)
    x0 = boxes[:, 1] * scale - offset
    y0 = boxes[:, 2] * scale - offset
    roi_w = boxes[:, 3] * scale - offset - x0
    roi_h = boxes[:, 4] * scale - offset - y0
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / oh
    bin_w = roi_w / ow
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.int64, device=input.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(bin_h).clamp(min=0).to(torch.int64)
        grid_w = torch.ceil(bin_w).clamp(min=0).to(torch.int64)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)
    wy = _axis_weights(y0, bin_h, grid_h, oh, h)  # (K, oh, H)
    wx = _axis_weights(x0, bin_w, grid_w, ow, w)  # (K, ow, W)
    feats = input.to(dtype)
    batch = boxes[:, 0].to(torch.int64)
    # Only the rows/columns with a non-zero weight are read: crop each RoI's window.
    rows_used = (wy != 0).any(dim=1)  # (K, H)
    cols_used = (wx != 0).any(dim=1)
    out = torch.zeros((k, c, oh, ow), dtype=dtype, device=input.device)
    ar_h = torch.arange(h, device=input.device)
    ar_w = torch.arange(w, device=input.device)
    big = h + w + 1
    y_lo: list[int] = torch.where(rows_used, ar_h[None, :], big).amin(dim=1).tolist()
    y_hi: list[int] = torch.where(rows_used, ar_h[None, :], -1).amax(dim=1).tolist()
    x_lo: list[int] = torch.where(cols_used, ar_w[None, :], big).amin(dim=1).tolist()
    x_hi: list[int] = torch.where(cols_used, ar_w[None, :], -1).amax(dim=1).tolist()
    bl: list[int] = batch.tolist()
    for i in range(k):
        if y_hi[i] < 0 or x_hi[i] < 0:
            continue
        crop = feats[bl[i], :, y_lo[i] : y_hi[i] + 1, x_lo[i] : x_hi[i] + 1]  # (C, h', w')
        a = wy[i, :, y_lo[i] : y_hi[i] + 1]  # (oh, h')
        bw = wx[i, :, x_lo[i] : x_hi[i] + 1]  # (ow, w')
        out[i] = torch.matmul(torch.matmul(a, crop), bw.t())
    out = out / count[:, None, None, None]
    return out.to(input.dtype)


@torch.library.custom_op("torchdet::roi_align", mutates_args=())
def _roi_align_op(
    input: torch.Tensor,
    rois: torch.Tensor,
    oh: int,
    ow: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    from .roi_align import roi_align

    with _tracing_paused():
        return roi_align(input, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)


@_roi_align_op.register_fake
def _(input, rois, oh, ow, spatial_scale, sampling_ratio, aligned):  # noqa: ANN001
    return input.new_empty((rois.shape[0], input.shape[1], oh, ow))


def _roi_align_symbolic(g, input, rois, oh, ow, spatial_scale, sampling_ratio, aligned):  # noqa: ANN001
    # ONNX RoiAlign (opset >= 16): X, rois (K, 4), batch_indices (K,) int64.
    from torch.onnx import symbolic_helper

    oh = symbolic_helper._maybe_get_const(oh, "i")
    ow = symbolic_helper._maybe_get_const(ow, "i")
    scale = symbolic_helper._maybe_get_const(spatial_scale, "f")
    ratio = symbolic_helper._maybe_get_const(sampling_ratio, "i")
    aligned = symbolic_helper._maybe_get_const(aligned, "b")
    batch = g.op("Gather", rois, g.op("Constant", value_t=torch.tensor(0)), axis_i=1)
    batch = g.op("Cast", batch, to_i=7)  # INT64
    boxes = g.op(
        "Slice",
        rois,
        g.op("Constant", value_t=torch.tensor([1])),
        g.op("Constant", value_t=torch.tensor([5])),
        g.op("Constant", value_t=torch.tensor([1])),
    )
    return g.op(
        "RoiAlign",
        input,
        boxes,
        batch,
        coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
        mode_s="avg",
        output_height_i=oh,
        output_width_i=ow,
        sampling_ratio_i=max(ratio, 0),
        spatial_scale_f=scale,
    )


def register_onnx_symbolics(opset: int) -> None:
    """Map ``torchdet::nms`` / ``torchdet::roi_align`` to ONNX ops for ``torch.onnx.export``
    (TorchScript-based exporter, ``opset >= 16``)."""
    if opset < 16:
        raise ValueError(
            f"ONNX RoiAlign with half-pixel coordinates needs opset >= 16, got {opset}"
        )
    torch.onnx.register_custom_op_symbolic("torchdet::nms", _nms_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("torchdet::roi_align", _roi_align_symbolic, opset)


def roi_align_for_tracing(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """RoIAlign recorded as ONNX ``RoiAlign`` (ONNX export) or a scripted function (trace).

    Args:
        input (Tensor[N, C, H, W]): feature map.
        rois (Tensor[K, 5]): batch index, x0, y0, x1, y1 in input-image pixels.
        output_size: (oh, ow).
        spatial_scale, sampling_ratio, aligned: as in :func:`torchdet.layers.roi_align`.

    Returns:
        Tensor[K, C, oh, ow].
    """
    oh, ow = int(output_size[0]), int(output_size[1])
    args = (float(spatial_scale), int(sampling_ratio), bool(aligned))
    if is_onnx_exporting():
        return _roi_align_op(input, rois, oh, ow, *args)
    return _scripted("_roi_align_separable")(input, rois, oh, ow, *args)

"""RoIAlign (Mask R-CNN) in pure PyTorch, with torchvision's exact sampling and boundary rules.

Shape shorthand: N images, C channels, H x W feature map, K RoIs, P x Q output bins (``oh x ow``),
``g`` samples per bin and axis (``sampling_ratio``, or ``ceil(bin size)`` when adaptive).

How it is computed: every output bin is the average of ``gh x gw`` bilinear samples on a regular
grid. For an axis-aligned RoI the grid is a tensor product and bilinear interpolation is separable
(the "sample is zero outside ``[-1, H] x [-1, W]``" rule too, being a product of two 1-D tests), so
the bin's weight over the feature map factorises into a row profile times a column profile. Each
profile lives on a short band of consecutive rows (columns), about ``bin size + 2`` long. The bin is
then one weighted sum of ``Ty * Tx`` feature vectors (C channels each), evaluated by a single
``embedding_bag`` call over the channels-last feature map: no per-RoI loop, work proportional to
the RoI areas (not to the largest RoI), and autograd gives the backward pass (an index-add into
the feature map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .tracing import roi_align_for_tracing

__all__ = ["ROIAlign", "roi_align"]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name} must be positive, got {pair}")
    return pair


def _as_tensor(boxes: object) -> torch.Tensor:
    """A Tensor, or anything carrying its boxes in ``.tensor`` (``Boxes``, ``RotatedBoxes``)."""
    if isinstance(boxes, torch.Tensor):
        return boxes
    inner = getattr(boxes, "tensor", None)
    if isinstance(inner, torch.Tensor):
        return inner
    raise TypeError(f"expected a Tensor or an object with a .tensor attribute, got {type(boxes)}")


def convert_rois(
    rois: torch.Tensor | Sequence[torch.Tensor], box_dim: int, name: str = "rois"
) -> torch.Tensor:
    """Bring RoIs to the ``(K, 1 + box_dim)`` layout ``[batch_index, box...]``.

    Args:
        rois: a Tensor[K, 1 + box_dim], or a list with one Tensor[Ki, box_dim] (or ``Boxes``-like
            object) per image, whose position in the list gives the batch index.
        box_dim: 4 for ``x0, y0, x1, y1`` boxes, 5 for rotated ``cx, cy, w, h, angle`` boxes.
        name: argument name used in error messages.
    """
    if isinstance(rois, (list, tuple)):
        parts = [_as_tensor(r) for r in rois]
        for i, part in enumerate(parts):
            if part.dim() != 2 or part.shape[1] != box_dim:
                raise ValueError(
                    f"{name}[{i}] must have shape (Ki, {box_dim}), got {tuple(part.shape)}"
                )
        if not parts:
            raise ValueError(
                f"{name} is an empty list: pass one (possibly empty) box set per image"
            )
        dtype = parts[0].dtype
        index = [torch.full_like(p[:, :1], i, dtype=dtype) for i, p in enumerate(parts)]
        return torch.cat([torch.cat([i, p.to(dtype)], dim=1) for i, p in zip(index, parts)], 0)
    rois = _as_tensor(rois)
    if rois.dim() != 2 or rois.shape[1] != box_dim + 1:
        raise ValueError(
            f"{name} must have shape (K, {box_dim + 1}) = [batch_index, box], "
            f"got {tuple(rois.shape)}"
        )
    return rois


def check_feature_map(input: torch.Tensor, rois: torch.Tensor, op: str) -> None:
    """Validate the ``(N, C, H, W)`` input of a RoI operator and its RoIs' device."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input)}")
    if input.dim() != 4:
        raise ValueError(f"{op}: input must have shape (N, C, H, W), got {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"{op}: input must be floating point, got {input.dtype}")
    if rois.device != input.device:
        raise ValueError(
            f"{op}: rois are on {rois.device} but input is on {input.device}; move them together"
        )


def compute_dtype(input: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else is computed in float32."""
    return torch.float64 if input.dtype == torch.float64 else torch.float32


def channels_last_table(input: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The feature map as an ``(N * H * W, C)`` table: one row of C channels per pixel."""
    n, c, h, w = input.shape
    return input.to(dtype).permute(0, 2, 3, 1).contiguous().view(n * h * w, c)


def true_divide(values: torch.Tensor, divisor: int) -> torch.Tensor:
    """``values / divisor`` rounded like the reference kernels' float division on every device.

    CUDA turns division by a Python scalar into multiplication by its reciprocal, which can be
    one ulp off; ``ceil`` / ``floor`` of the result (sample counts, bin edges) then disagree.
    """
    return values / torch.full_like(values, divisor)


# Index/weight pairs expanded at once (about 200 MB of bookkeeping); more RoIs go in more chunks.
MAX_TAPS = 1 << 24


def roi_chunks(taps_per_roi: torch.Tensor, limit: int | None = None) -> list[slice]:
    """Split RoIs into consecutive ranges of about ``limit`` taps each (at least one RoI each).

    Bounds the memory of the flattened tap lists when RoIs are many and large; a single RoI with
    more taps than the limit still forms one range.
    """
    limit = MAX_TAPS if limit is None else limit
    k = taps_per_roi.numel()
    cumulative = torch.cumsum(taps_per_roi, 0)
    if k == 0 or int(cumulative[-1]) <= limit:
        return [slice(0, k)]
    # RoIs whose last tap falls in the same block of `limit` taps go together.
    block = torch.div((cumulative - 1).clamp(min=0), limit, rounding_mode="floor")
    counts = torch.unique_consecutive(block, return_counts=True)[1].tolist()
    bounds = [0]
    for count in counts:  # one iteration per chunk, not per RoI
        bounds.append(bounds[-1] + count)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def ragged_arange(lengths: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments of the given lengths laid end to end: each element's segment and rank in it.

    Args:
        lengths (Tensor[S] int64): segment lengths (zeros allowed).
        total: ``lengths.sum()`` (passed in: the caller already synchronised on it).

    Returns:
        segment (Tensor[total] int64), rank (Tensor[total] int64).
    """
    segment = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=lengths.device), lengths, output_size=total
    )
    starts = torch.cumsum(lengths, 0) - lengths
    rank = torch.arange(total, device=lengths.device) - starts[segment]
    return segment, rank


def _axis_profiles(
    start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, bins: int, length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1-D bilinear weight profiles of every bin along one axis.

    Follows torchvision's ``bilinear_interpolate``: a sample at ``y < -1`` or ``y > length`` is
    zero, otherwise ``y`` is clamped to ``[0, length - 1]`` and split between its two neighbours.

    Args:
        start, bin_size (Tensor[K]): RoI start and bin size along the axis, in feature pixels.
        grid (Tensor[K] int64): samples per bin along the axis (0 = the RoI has no sample).
        bins: number of output bins along the axis.
        length: feature map size along the axis.

    Returns:
        first (Tensor[K, bins] int64): first pixel of each bin's band.
        taps (Tensor[K, bins] int64): band length (0 when no sample lands in the image).
        weights (Tensor[K, bins, max taps]): band weights, already divided by ``grid``.
    """
    k = start.shape[0]
    gmax = int(grid.max()) if k else 0
    dtype, device = start.dtype, start.device
    if gmax == 0:
        zeros = torch.zeros(k, bins, dtype=torch.int64, device=device)
        return zeros, zeros, torch.zeros(k, bins, 0, dtype=dtype, device=device)
    p = torch.arange(bins, device=device, dtype=dtype)[None, :, None]
    a = torch.arange(gmax, device=device, dtype=dtype)[None, None, :]
    g = grid.clamp(min=1).to(dtype)[:, None, None]
    b = bin_size[:, None, None]
    # Same evaluation order as the reference kernel: start + p * bin + (a + .5) * bin / grid.
    y = start[:, None, None] + p * b + (a + 0.5) * b / g  # (K, bins, gmax)
    valid = (a < grid[:, None, None]) & (y >= -1.0) & (y <= length)
    y = y.clamp(min=0.0, max=float(length))
    low = y.floor().to(torch.int64)
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(y), y - low.to(dtype))
    share = valid.to(dtype) / g  # each sample's weight in the bin's mean (0 if invalid)

    big = torch.iinfo(torch.int64).max
    first = torch.where(valid, low, torch.full_like(low, big)).amin(dim=2)
    last = torch.where(valid, high, torch.full_like(high, -1)).amax(dim=2)
    taps = (last - first + 1).clamp(min=0)
    first = torch.where(taps > 0, first, torch.zeros_like(first))
    tmax = int(taps.max())
    weights = torch.zeros(k, bins, max(tmax, 1), dtype=dtype, device=device)
    rel_low = torch.where(valid, low - first[:, :, None], torch.zeros_like(low))
    rel_high = torch.where(valid, high - first[:, :, None], torch.zeros_like(high))
    weights.scatter_add_(2, rel_low, (1.0 - frac) * share)
    weights.scatter_add_(2, rel_high, frac * share)
    return first, taps, weights[:, :, :tmax]


def separable_bags(
    batch_index: torch.Tensor,
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cols: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten separable bin weights into ``embedding_bag`` inputs.

    Bag ``(k, p, q)`` holds pixel ``(row_first[k, p] + t, col_first[k, q] + s)`` of image
    ``batch_index[k]`` with weight ``row_w[k, p, t] * col_w[k, q, s]``, for every
    ``t < row_taps[k, p]`` and ``s < col_taps[k, q]``.

    Returns:
        indices (Tensor[T] int64) into the ``(N * H * W, C)`` table, offsets (Tensor[K * P * Q]
        int64) where each bag starts, per_sample_weights (Tensor[T]).
    """
    row_first, row_taps, row_w = rows
    col_first, col_taps, col_w = cols
    k, p = row_taps.shape
    q = col_taps.shape[1]
    ty = row_taps[:, :, None].expand(k, p, q).reshape(-1)  # (B,) per bag (k, p, q)
    tx = col_taps[:, None, :].expand(k, p, q).reshape(-1)
    bag_len = ty * tx
    offsets = torch.cumsum(bag_len, 0) - bag_len

    # Level 1: one entry per (bag, band row t).
    row_base = (batch_index[:, None] * height + row_first) * width  # (K, P)
    row_base = (row_base[:, :, None] + col_first[:, None, :]).reshape(-1)  # (B,)
    row_w_base = (torch.arange(k * p, device=ty.device) * row_w.shape[2]).view(k, p, 1)
    row_w_base = row_w_base.expand(k, p, q).reshape(-1)
    col_w_base = (torch.arange(k * q, device=ty.device) * col_w.shape[2]).view(k, 1, q)
    col_w_base = col_w_base.expand(k, p, q).reshape(-1)
    n1 = int(ty.sum())
    bag, t = ragged_arange(ty, n1)
    e_base = row_base[bag] + t * width
    e_weight = row_w.reshape(-1)[row_w_base[bag] + t]
    e_taps = tx[bag]
    e_col_w = col_w_base[bag]

    # Level 2: one entry per (bag, t, s).
    n2 = int(bag_len.sum())
    entry, s = ragged_arange(e_taps, n2)
    indices = e_base[entry] + s
    weights = e_weight[entry] * col_w.reshape(-1)[e_col_w[entry] + s]
    return indices, offsets, weights


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor | Sequence[torch.Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign with torchvision's semantics (Detectron2 passes ``aligned=True``).

    Args:
        input (Tensor[N, C, H, W]): feature map, any floating dtype (computed in float32 unless
            float64, returned in the input dtype).
        rois (Tensor[K, 5]): ``batch_index, x0, y0, x1, y1`` in input-image pixels; or a list with
            one Tensor[Ki, 4] per image.
        output_size: ``(oh, ow)`` or an int for a square output.
        spatial_scale: feature map size / input image size (e.g. 1/4 for the stride-4 level).
        sampling_ratio: bilinear samples per bin and axis; ``<= 0`` means adaptive,
            ``ceil(roi size / output size)`` per RoI and axis.
        aligned: shift box coordinates by -0.5 pixel (pixel centres at integer+0.5). If False, the
            legacy rule applies: no shift and RoI sizes are clamped to at least 1.

    Returns:
        Tensor[K, C, oh, ow] in the dtype of ``input``. No gradient flows to ``rois``.
    """
    rois = convert_rois(rois, 4)
    check_feature_map(input, rois, "roi_align")
    oh, ow = _pair(output_size, "output_size")
    if torch.jit.is_tracing():  # export: a graph that holds for any input (see tracing.py)
        return roi_align_for_tracing(input, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
    n, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0 or h == 0 or w == 0:
        return input.new_zeros((k, c, oh, ow))
    dtype = compute_dtype(input)
    boxes = rois.detach().to(dtype)
    batch_index = boxes[:, 0].to(torch.int64)
    if int(batch_index.min()) < 0 or int(batch_index.max()) >= n:
        raise ValueError(f"roi_align: batch indices in rois must lie in [0, {n}), input has N={n}")

    offset = 0.5 if aligned else 0.0
    scale = torch.tensor(spatial_scale, dtype=dtype)  # keep the reference's float32 arithmetic
    x0 = boxes[:, 1] * scale - offset
    y0 = boxes[:, 2] * scale - offset
    roi_w = boxes[:, 3] * scale - offset - x0
    roi_h = boxes[:, 4] * scale - offset - y0
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = true_divide(roi_h, oh)
    bin_w = true_divide(roi_w, ow)
    if sampling_ratio > 0:
        grid_h = torch.full_like(batch_index, sampling_ratio)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(bin_h).clamp(min=0).to(torch.int64)
        grid_w = torch.ceil(bin_w).clamp(min=0).to(torch.int64)

    rows = _axis_profiles(y0, bin_h, grid_h, oh, h)
    cols = _axis_profiles(x0, bin_w, grid_w, ow, w)
    table = channels_last_table(input, dtype)
    outs = []
    for part in roi_chunks(rows[1].sum(1) * cols[1].sum(1)):
        indices, offsets, weights = separable_bags(
            batch_index[part], tuple(t[part] for t in rows), tuple(t[part] for t in cols), h, w
        )
        outs.append(
            F.embedding_bag(indices, table, offsets, mode="sum", per_sample_weights=weights)
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.view(k, oh, ow, c).permute(0, 3, 1, 2).to(input.dtype).contiguous()


class ROIAlign(nn.Module):
    """RoIAlign layer (Detectron2's ``layers.ROIAlign``).

    Args:
        output_size: ``(oh, ow)`` or an int.
        spatial_scale: feature map size / input image size.
        sampling_ratio: samples per bin and axis, 0 for adaptive.
        aligned: pixel-centre shift of -0.5 (Detectron2's models use True; False reproduces the
            original Mask R-CNN / Caffe2 behaviour).
    """

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(
        self, input: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """
        Args:
            input (Tensor[N, C, H, W]): feature map.
            rois (Tensor[K, 5]): ``batch_index, x0, y0, x1, y1``, or a list of Tensor[Ki, 4].

        Returns:
            Tensor[K, C, oh, ow].
        """
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )

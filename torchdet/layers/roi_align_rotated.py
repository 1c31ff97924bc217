"""RoIAlign for rotated boxes (Detectron2's ``ROIAlignRotated``) in pure PyTorch.

Shape shorthand: N images, C channels, H x W feature map, K RoIs, P x Q output bins, ``gh x gw``
samples per bin (``sampling_ratio``, or adaptive per RoI).

The sampling grid of a rotated RoI is not a tensor product in image axes, so each bin is the mean
of its ``gh * gw`` bilinear samples, 4 taps each. All taps of all bins are flattened into one
``embedding_bag`` call over the channels-last feature map: the number of taps of RoI k is
``4 * P * Q * gh_k * gw_k`` (no padding to the largest RoI), and autograd provides the backward
pass into the feature map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .roi_align import (
    _pair,
    channels_last_table,
    check_feature_map,
    compute_dtype,
    convert_rois,
    ragged_arange,
    roi_chunks,
    true_divide,
)

__all__ = ["ROIAlignRotated", "roi_align_rotated"]


def _frame_coordinates(
    size: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, bins: int, gmax: int
) -> torch.Tensor:
    """Sample offsets from the RoI centre along one RoI axis: Tensor[K, bins, gmax].

    ``-size / 2 + p * bin + (i + 0.5) * bin / grid`` for bin p and sample i (entries with
    ``i >= grid`` are unused).
    """
    dtype, device = size.dtype, size.device
    p = torch.arange(bins, device=device, dtype=dtype)[None, :, None]
    i = torch.arange(gmax, device=device, dtype=dtype)[None, None, :]
    b = bin_size[:, None, None]
    g = grid.clamp(min=1).to(dtype)[:, None, None]
    return -size[:, None, None] / 2.0 + p * b + (i + 0.5) * b / g


def _rotated_bags(
    batch_index: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    roi_w: torch.Tensor,
    roi_h: torch.Tensor,
    cos_t: torch.Tensor,
    sin_t: torch.Tensor,
    bin_h: torch.Tensor,
    bin_w: torch.Tensor,
    grid_h: torch.Tensor,
    grid_w: torch.Tensor,
    oh: int,
    ow: int,
    h: int,
    w: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``embedding_bag`` inputs of rotated RoIAlign: 4 bilinear taps per sample, one bag per bin.

    Args: per-RoI Tensor[K] values (feature-map units; centres already shifted by -0.5), output
        bins ``oh x ow`` and the feature map size ``h x w``.

    Returns:
        indices (Tensor[T] int64) into the ``(N * H * W, C)`` table, offsets (Tensor[K * oh * ow]),
        per_sample_weights (Tensor[T]).
    """
    dtype = cx.dtype
    k = batch_index.shape[0]
    # Sample coordinates in the RoI frame only depend on (RoI, bin row, iy) and (RoI, bin column,
    # ix): tabulate them per RoI (same evaluation order as the reference), rotated terms included.
    gh_max, gw_max = int(grid_h.max()), int(grid_w.max())
    yy = _frame_coordinates(roi_h, bin_h, grid_h, oh, gh_max)  # (K, oh, gh_max)
    xx = _frame_coordinates(roi_w, bin_w, grid_w, ow, gw_max)  # (K, ow, gw_max)
    cos3, sin3 = cos_t[:, None, None], sin_t[:, None, None]
    x_terms = torch.stack([xx * sin3, xx * cos3], dim=-1).view(-1, 2)  # xx sin, xx cos

    # Level 1: one entry per sample row (RoI k, bin (ph, pw), iy), bins in (k, ph, pw) order.
    per_bin = grid_h * grid_w  # (K,)
    rows_per_roi = grid_h * (oh * ow)
    n1 = int(rows_per_roi.sum())
    roi, rank = ragged_arange(rows_per_roi, n1)
    gh = grid_h[roi]
    bin_id = rank // gh
    iy = rank - bin_id * gh
    ph, pw = bin_id // ow, bin_id % ow
    ia = (roi * oh + ph) * gh_max + iy
    yy_e = yy.view(-1)[ia]
    # Per entry: yy cos, yy sin, centre y, centre x, 1 / samples per bin.
    rows = torch.stack(
        [yy_e * cos_t[roi], yy_e * sin_t[roi], cy[roi], cx[roi],
         1.0 / per_bin[roi].clamp(min=1).to(dtype)],
        dim=1,
    )  # fmt: skip
    row_ints = torch.stack([(roi * ow + pw) * gw_max, batch_index[roi] * (h * w)], dim=1)

    # Level 2: one entry per sample (.., ix).
    total = int((per_bin * (oh * ow)).sum())
    entry, ix = ragged_arange(grid_w[roi], total)
    y_cos, y_sin, c_y, c_x, share = rows[entry].unbind(1)
    x_base, base = row_ints[entry].unbind(1)
    x_sin, x_cos = x_terms[x_base + ix].unbind(1)
    y = y_cos - x_sin + c_y
    x = y_sin + x_cos + c_x

    # Bilinear taps with RoIAlign's rule: 0 outside [-1, H] x [-1, W], else clamp into the map.
    # Clamping to [0, H - 1] first gives the reference's "y_low >= H - 1" branch for free.
    share = share * ((y >= -1.0) & (y <= h) & (x >= -1.0) & (x <= w))
    y = y.clamp(min=0.0, max=float(h - 1))
    x = x.clamp(min=0.0, max=float(w - 1))
    y_floor, x_floor = y.floor(), x.floor()
    ly, lx = y - y_floor, x - x_floor
    y_low, x_low = y_floor.to(torch.int64), x_floor.to(torch.int64)
    row_low = base + y_low * w
    row_high = base + (y_low + 1).clamp(max=h - 1) * w
    x_high = (x_low + 1).clamp(max=w - 1)
    indices = torch.empty(total, 4, dtype=torch.int64, device=y.device)
    torch.add(row_low, x_low, out=indices[:, 0])
    torch.add(row_low, x_high, out=indices[:, 1])
    torch.add(row_high, x_low, out=indices[:, 2])
    torch.add(row_high, x_high, out=indices[:, 3])
    hy_s = (1.0 - ly) * share
    ly_s = ly * share
    hx = 1.0 - lx
    weights = torch.empty(total, 4, dtype=dtype, device=y.device)
    torch.mul(hy_s, hx, out=weights[:, 0])
    torch.mul(hy_s, lx, out=weights[:, 1])
    torch.mul(ly_s, hx, out=weights[:, 2])
    torch.mul(ly_s, lx, out=weights[:, 3])
    bag_len = (4 * per_bin)[:, None].expand(k, oh * ow).reshape(-1)
    offsets = torch.cumsum(bag_len, 0) - bag_len
    return indices.view(-1), offsets, weights.view(-1)


def roi_align_rotated(
    input: torch.Tensor,
    rois: torch.Tensor | Sequence[torch.Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """RoIAlign over rotated boxes, with Detectron2's semantics.

    Box centres are shifted by -0.5 pixel (always "aligned"); the regular sampling grid of the
    ``w x h`` box is rotated counter-clockwise by ``angle`` degrees about the centre
    (``y = yy cos - xx sin + cy``, ``x = yy sin + xx cos + cx``). Samples follow RoIAlign's bilinear
    rule: zero outside ``[-1, H] x [-1, W]``, else clamped into the map.

    Args:
        input (Tensor[N, C, H, W]): feature map (float64 computed in float64, anything else in
            float32; the result has the input's dtype).
        rois (Tensor[K, 6]): ``batch_index, cx, cy, w, h, angle_degrees`` in input-image pixels, or
            a list with one Tensor[Ki, 5] (or ``RotatedBoxes``) per image.
        output_size: ``(oh, ow)`` or an int.
        spatial_scale: feature map size / input image size.
        sampling_ratio: samples per bin and axis; ``<= 0`` is adaptive, ``ceil(size / output)``.

    Returns:
        Tensor[K, C, oh, ow]. No gradient flows to ``rois``.
    """
    rois = convert_rois(rois, 5)
    check_feature_map(input, rois, "roi_align_rotated")
    oh, ow = _pair(output_size, "output_size")
    n, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0 or h == 0 or w == 0:
        return input.new_zeros((k, c, oh, ow))
    dtype = compute_dtype(input)
    boxes = rois.detach().to(dtype)
    batch_index = boxes[:, 0].to(torch.int64)
    if int(batch_index.min()) < 0 or int(batch_index.max()) >= n:
        raise ValueError(f"roi_align_rotated: batch indices must lie in [0, {n}), input has N={n}")
    scale = torch.tensor(spatial_scale, dtype=dtype)
    cx = boxes[:, 1] * scale - 0.5
    cy = boxes[:, 2] * scale - 0.5
    roi_w = boxes[:, 3] * scale
    roi_h = boxes[:, 4] * scale
    if bool((roi_w < 0).any()) or bool((roi_h < 0).any()):
        raise ValueError("roi_align_rotated: rois must have non-negative width and height")
    # The reference computes the angle in double and its cosine in the input precision.
    theta = (boxes[:, 5].to(torch.float64) * (math.pi / 180.0)).to(dtype)
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    bin_h = true_divide(roi_h, oh)
    bin_w = true_divide(roi_w, ow)
    if sampling_ratio > 0:
        grid_h = torch.full_like(batch_index, sampling_ratio)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(bin_h).to(torch.int64)
        grid_w = torch.ceil(bin_w).to(torch.int64)

    table = channels_last_table(input, dtype)
    per_roi = (grid_h * grid_w) * (4 * oh * ow)  # taps of each RoI
    per_roi_args = (batch_index, cx, cy, roi_w, roi_h, cos_t, sin_t, bin_h, bin_w, grid_h, grid_w)
    outs = []
    for part in roi_chunks(per_roi):
        indices, offsets, weights = _rotated_bags(*(t[part] for t in per_roi_args), oh, ow, h, w)
        outs.append(
            F.embedding_bag(indices, table, offsets, mode="sum", per_sample_weights=weights)
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.view(k, oh, ow, c).permute(0, 3, 1, 2).to(input.dtype).contiguous()


class ROIAlignRotated(nn.Module):
    """Rotated RoIAlign layer (Detectron2's ``layers.ROIAlignRotated``).

    Args:
        output_size: ``(oh, ow)`` or an int.
        spatial_scale: feature map size / input image size.
        sampling_ratio: samples per bin and axis, 0 for adaptive.
    """

    def __init__(
        self, output_size: int | Sequence[int], spatial_scale: float, sampling_ratio: int
    ) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)

    def forward(
        self, input: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """
        Args:
            input (Tensor[N, C, H, W]): feature map.
            rois (Tensor[K, 6]): ``batch_index, cx, cy, w, h, angle_degrees``.

        Returns:
            Tensor[K, C, oh, ow] in the input's dtype.
        """
        return roi_align_rotated(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}"
        )

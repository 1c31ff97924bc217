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
    true_divide,
)

__all__ = ["ROIAlignRotated", "roi_align_rotated"]


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

    # One entry per sample, RoI by RoI: (bin p, q) then (iy, ix) inside the bin.
    per_bin = grid_h * grid_w  # (K,)
    per_roi = per_bin * (oh * ow)
    total = int(per_roi.sum())
    roi, rank = ragged_arange(per_roi, total)
    pb = per_bin[roi]
    bin_id, inner = rank // pb, rank % pb
    gw = grid_w[roi]
    iy, ix = inner // gw, inner % gw
    ph, pw = bin_id // ow, bin_id % ow
    bh, bw = bin_h[roi], bin_w[roi]
    yy = -roi_h[roi] / 2.0 + ph.to(dtype) * bh + (iy.to(dtype) + 0.5) * bh / grid_h[roi].to(dtype)
    xx = -roi_w[roi] / 2.0 + pw.to(dtype) * bw + (ix.to(dtype) + 0.5) * bw / gw.to(dtype)
    c_r, s_r = cos_t[roi], sin_t[roi]
    y = yy * c_r - xx * s_r + cy[roi]
    x = yy * s_r + xx * c_r + cx[roi]

    valid = (y >= -1.0) & (y <= h) & (x >= -1.0) & (x <= w)
    y = y.clamp(min=0.0, max=float(h))
    x = x.clamp(min=0.0, max=float(w))
    y_low, x_low = y.floor().to(torch.int64), x.floor().to(torch.int64)
    y_end, x_end = y_low >= h - 1, x_low >= w - 1
    y_low = torch.where(y_end, torch.full_like(y_low, h - 1), y_low)
    x_low = torch.where(x_end, torch.full_like(x_low, w - 1), x_low)
    y_high = torch.where(y_end, y_low, y_low + 1)
    x_high = torch.where(x_end, x_low, x_low + 1)
    ly = torch.where(y_end, torch.zeros_like(y), y - y_low.to(dtype))
    lx = torch.where(x_end, torch.zeros_like(x), x - x_low.to(dtype))
    hy, hx = 1.0 - ly, 1.0 - lx
    share = valid.to(dtype) / pb.clamp(min=1).to(dtype)

    base = batch_index[roi] * (h * w)
    indices = torch.stack(
        [
            base + y_low * w + x_low,
            base + y_low * w + x_high,
            base + y_high * w + x_low,
            base + y_high * w + x_high,
        ],
        dim=1,
    ).view(-1)
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=1).mul_(share[:, None])
    bag_len = (4 * per_bin)[:, None].expand(k, oh * ow).reshape(-1)
    offsets = torch.cumsum(bag_len, 0) - bag_len
    table = channels_last_table(input, dtype)
    out = F.embedding_bag(indices, table, offsets, mode="sum", per_sample_weights=weights.view(-1))
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

"""RoIPool (Fast R-CNN max pooling over RoI bins) in pure PyTorch, torchvision's semantics.

Shape shorthand: N images, C channels, H x W feature map, K RoIs, P x Q output bins.

Each bin is a max over a rectangle of whole pixels. All pixels of all bins are flattened into one
list (no padding to the largest bin) and reduced per bin by one ``embedding_bag(mode="max")``
over the channels-last feature map; bins that cover no pixel give 0. Autograd routes the gradient
to the maximal pixel of each bin.
"""

from __future__ import annotations

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

__all__ = ["ROIPool", "roi_pool"]


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    # C's round(): halves go away from zero (torch.round rounds them to even).
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bin_edges(
    start: torch.Tensor, size: torch.Tensor, bins: int, length: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer ``[begin, end)`` pixel ranges of the bins along one axis, clipped to the map.

    Args:
        start (Tensor[K] int64): rounded RoI start; size (Tensor[K] int64): RoI size (>= 1).

    Returns:
        begin, end (Tensor[K, bins] int64).
    """
    bin_size = true_divide(size.to(dtype)[:, None], bins)
    p = torch.arange(bins, device=start.device, dtype=dtype)[None, :]
    begin = torch.floor(p * bin_size).to(torch.int64) + start[:, None]
    end = torch.ceil((p + 1) * bin_size).to(torch.int64) + start[:, None]
    return begin.clamp(0, length), end.clamp(0, length)


def _pool_bags(
    batch_index: torch.Tensor,
    row_begin: torch.Tensor,
    row_len: torch.Tensor,
    col_begin: torch.Tensor,
    col_len: torch.Tensor,
    h: int,
    w: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``embedding_bag`` bag per bin, holding the bin's pixels.

    Args:
        batch_index (Tensor[K]); row_begin, row_len (Tensor[K, P]); col_begin, col_len
            (Tensor[K, Q]): the bins' clipped pixel ranges.

    Returns:
        indices (Tensor[T] int64) into the ``(N * H * W, C)`` table, bins in (k, p, q) order and
        pixels row-major inside a bin; offsets (Tensor[K * P * Q]) where each bin starts.
    """
    k, oh = row_len.shape
    ow = col_len.shape[1]
    rows = row_len[:, :, None].expand(k, oh, ow).reshape(-1)
    cols = col_len[:, None, :].expand(k, oh, ow).reshape(-1)
    sizes = rows * cols
    bag, rank = ragged_arange(sizes, int(sizes.sum()))
    r, s = rank // cols[bag], rank % cols[bag]
    kk = bag // (oh * ow)
    p, q = (bag // ow) % oh, bag % ow
    y = row_begin[kk, p] + r
    x = col_begin[kk, q] + s
    return (batch_index[kk] * h + y) * w + x, torch.cumsum(sizes, 0) - sizes


def roi_pool(
    input: torch.Tensor,
    rois: torch.Tensor | Sequence[torch.Tensor],
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Max-pool every RoI into a fixed grid of bins (torchvision's ``roi_pool``).

    RoI corners are scaled and rounded to whole pixels (half away from zero); the RoI is at
    least 1x1; bin ``p`` spans ``[floor(p * s), ceil((p + 1) * s))`` with ``s = roi size / bins``,
    offset by the RoI start and clipped to the map; an empty bin gives 0.

    Args:
        input (Tensor[N, C, H, W]): feature map (result in its dtype).
        rois (Tensor[K, 5]): ``batch_index, x0, y0, x1, y1`` in input-image pixels, or a list with
            one Tensor[Ki, 4] per image.
        output_size: ``(oh, ow)`` or an int.
        spatial_scale: feature map size / input image size.

    Returns:
        Tensor[K, C, oh, ow].
    """
    rois = convert_rois(rois, 4)
    check_feature_map(input, rois, "roi_pool")
    oh, ow = _pair(output_size, "output_size")
    n, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0 or h == 0 or w == 0:
        return input.new_zeros((k, c, oh, ow))
    dtype = compute_dtype(input)
    boxes = rois.detach().to(dtype)
    batch_index = boxes[:, 0].to(torch.int64)
    if int(batch_index.min()) < 0 or int(batch_index.max()) >= n:
        raise ValueError(f"roi_pool: batch indices in rois must lie in [0, {n}), input has N={n}")
    corners = _round_half_away(boxes[:, 1:] * torch.tensor(spatial_scale, dtype=dtype))
    corners = corners.to(torch.int64)
    x0, y0, x1, y1 = corners.unbind(1)
    row_begin, row_end = _bin_edges(y0, (y1 - y0 + 1).clamp(min=1), oh, h, dtype)
    col_begin, col_end = _bin_edges(x0, (x1 - x0 + 1).clamp(min=1), ow, w, dtype)

    row_len = (row_end - row_begin).clamp(min=0)  # (K, oh)
    col_len = (col_end - col_begin).clamp(min=0)  # (K, ow)
    table = channels_last_table(input, dtype)
    outs = []
    for part in roi_chunks(row_len.sum(1) * col_len.sum(1)):
        indices, offsets = _pool_bags(
            batch_index[part], row_begin[part], row_len[part], col_begin[part], col_len[part], h, w
        )
        # A fused gather + max per bin: the (pixels x C) values are never materialised. Empty
        # bins come back as 0.
        outs.append(F.embedding_bag(indices, table, offsets, mode="max"))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.view(k, oh, ow, c).permute(0, 3, 1, 2).to(input.dtype).contiguous()


class ROIPool(nn.Module):
    """RoIPool layer (torchvision's ``ops.RoIPool``, which Detectron2 re-exports).

    Args:
        output_size: ``(oh, ow)`` or an int.
        spatial_scale: feature map size / input image size.
    """

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)

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
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"

"""Pasting low-resolution instance masks into the image (Detectron2's ``paste_masks_in_image``).

Shape shorthand: N masks of ``Hm x Wm`` (28 x 28 for Mask R-CNN), image of ``h x w``.

Semantics: a mask is stretched over its box like ``grid_sample(mask, grid, align_corners=False)``
with zero padding, evaluated at the centres of the image pixels within one pixel of the box
(``[floor(x0) - 1, ceil(x1) + 1)`` clipped to the image, Detectron2's CPU path); every other
pixel is 0. The result is thresholded (``>= threshold``), or scaled to uint8 when ``threshold < 0``.

How it is computed: the sampling grid is a tensor product, so bilinear resampling is separable and
a pasted mask is ``Wy @ mask @ Wx^T`` with ``Wy (h', Hm)`` and ``Wx (w', Wm)`` interpolation
matrices restricted to the box's region. Masks are grouped by region size (sizes rounded up to a
power of two, so a group costs at most 4x its area) and each group is two batched matmuls plus one
block-indexed write into the output; the Python loop runs over these size groups, not over masks.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["paste_masks_in_image"]

# Pixels of the pasting windows processed at once (float32 values: 4 bytes each).
_CHUNK_PIXELS = 1 << 26


def _axis_weights(
    pixel: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, size: int
) -> torch.Tensor:
    """Interpolation matrix from mask cells to image pixels along one axis.

    Args:
        pixel (Tensor[M, P]): image pixel indices (as floats) of each mask's window.
        lo, hi (Tensor[M, 1]): the box's start and end along the axis.
        size: mask cells along the axis.

    Returns:
        Tensor[M, P, size]: weight of mask cell j for image pixel p.
    """
    # Normalised coordinate of the pixel centre, then grid_sample's align_corners=False mapping.
    g = (pixel + 0.5 - lo) / (hi - lo) * 2 - 1
    u = ((g + 1) * size - 1) / 2
    low = torch.floor(u)
    frac = u - low
    cells = torch.arange(size, device=pixel.device, dtype=pixel.dtype)
    # where(), not a product with the mask: a degenerate box (x1 == x0) gives inf / nan
    # coordinates, which must contribute 0 like grid_sample's out-of-range samples.
    zero = torch.zeros((), dtype=pixel.dtype, device=pixel.device)
    w_low = torch.where(cells == low[..., None], (1 - frac)[..., None], zero)
    w_high = torch.where(cells == (low + 1)[..., None], frac[..., None], zero)
    return w_low + w_high


def _zeros(shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zero tensor; on CPU from calloc-backed memory, whose pages stay untouched until written.

    The output is mostly background: filling it explicitly would cost more than the pasting itself
    (100 masks at 800x1333 are 107 MB), while freshly mapped memory already reads as zeros.
    """
    if device.type == "cpu":
        return torch.from_numpy(
            np.zeros(shape, dtype=np.bool_ if dtype == torch.bool else np.uint8)
        )
    return torch.zeros(shape, dtype=dtype, device=device)


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: torch.Tensor | object,
    image_shape: tuple[int, int],
    threshold: float = 0.5,
) -> torch.Tensor:
    """Paste each mask into its box in an image of the given size.

    Args:
        masks (Tensor[N, Hm, Wm]): per-box mask probabilities (any dtype; non-float is converted).
        boxes (Tensor[N, 4] or ``Boxes``): ``x0, y0, x1, y1`` in absolute image pixels.
        image_shape: ``(h, w)`` of the output image.
        threshold: pixels with value ``>= threshold`` are True. A negative threshold returns the
            soft mask scaled to ``[0, 255]`` as uint8 instead (for visualisation).

    Returns:
        Tensor[N, h, w]: bool (uint8 when ``threshold < 0``), on the boxes' device.
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks)
        raise ValueError(f"paste_masks_in_image: masks must be a Tensor[N, Hm, Wm], got {shape}")
    if not isinstance(boxes, torch.Tensor):
        inner = getattr(boxes, "tensor", None)
        if not isinstance(inner, torch.Tensor):
            raise TypeError(
                f"paste_masks_in_image: boxes must be a Tensor[N, 4] or Boxes, got {type(boxes)}"
            )
        boxes = inner
    n = masks.shape[0]
    if boxes.dim() != 2 or boxes.shape != (n, 4):
        raise ValueError(
            f"paste_masks_in_image: boxes must have shape ({n}, 4) to match {n} masks, "
            f"got {tuple(boxes.shape)}"
        )
    if len(image_shape) != 2:
        raise ValueError(f"paste_masks_in_image: image_shape must be (h, w), got {image_shape}")
    img_h, img_w = int(image_shape[0]), int(image_shape[1])
    device = boxes.device
    out_dtype = torch.bool if threshold >= 0 else torch.uint8
    out = _zeros((n, img_h, img_w), out_dtype, device)
    if n == 0 or img_h == 0 or img_w == 0:
        return out

    dtype = torch.float64 if masks.dtype == torch.float64 else torch.float32
    masks = masks.to(device=device, dtype=dtype)
    boxes = boxes.to(dtype)
    hm, wm = masks.shape[1:]

    # Region of each box that the reference evaluates: one pixel of margin, clipped to the image.
    x_lo = (torch.floor(boxes[:, 0]) - 1).clamp(min=0)
    y_lo = (torch.floor(boxes[:, 1]) - 1).clamp(min=0)
    x_hi = (torch.ceil(boxes[:, 2]) + 1).clamp(max=img_w)
    y_hi = (torch.ceil(boxes[:, 3]) + 1).clamp(max=img_h)
    rw = (x_hi - x_lo).clamp(min=0)
    rh = (y_hi - y_lo).clamp(min=0)
    nonempty = (rw > 0) & (rh > 0)

    # Windows: sizes rounded up to a power of two (capped by the image), kept inside the image.
    # Windows below 32 pixels share one size: they are cheap, and fewer groups mean fewer ops.
    def window(size: torch.Tensor, limit: int) -> torch.Tensor:
        rounded = 2 ** torch.ceil(torch.log2(size.clamp(min=32)))
        return torch.minimum(rounded, torch.tensor(float(limit)))

    win_w = window(rw, img_w).to(torch.int64)
    win_h = window(rh, img_h).to(torch.int64)
    x_start = torch.minimum(x_lo.to(torch.int64), img_w - win_w).clamp(min=0)
    y_start = torch.minimum(y_lo.to(torch.int64), img_h - win_h).clamp(min=0)

    key = win_h * (img_w + 1) + win_w
    key = torch.where(nonempty, key, torch.full_like(key, -1))
    order = torch.argsort(key)
    keys, counts = torch.unique_consecutive(key[order], return_counts=True)
    groups = torch.split(order, counts.tolist())
    for group_key, group in zip(keys.tolist(), groups):
        if group_key < 0:
            continue  # boxes entirely outside the image: nothing to paste
        ph, pw = divmod(group_key, img_w + 1)
        # Chunks bound the (M, ph, pw) buffers (about 256 MB of float values at most).
        for members in group.split(max(1, _CHUNK_PIXELS // (ph * pw))):
            b = boxes[members]
            rows = y_start[members, None] + torch.arange(ph, device=device)  # (M, ph)
            cols = x_start[members, None] + torch.arange(pw, device=device)  # (M, pw)
            row_in = (rows >= y_lo[members, None]) & (rows < y_hi[members, None])  # (M, ph)
            col_in = (cols >= x_lo[members, None]) & (cols < x_hi[members, None])  # (M, pw)
            # Zero weights outside the region make the pasted value 0 there.
            wy = _axis_weights(rows.to(dtype), b[:, 1:2], b[:, 3:4], hm) * row_in[:, :, None]
            wx = _axis_weights(cols.to(dtype), b[:, 0:1], b[:, 2:3], wm) * col_in[:, :, None]
            values = torch.bmm(torch.bmm(wy, masks[members]), wx.transpose(1, 2))  # (M, ph, pw)
            if threshold > 0:
                pasted = values >= threshold
            elif threshold == 0:  # everything in the region passes, nothing outside it
                pasted = row_in[:, :, None] & col_in[:, None, :]
            else:
                pasted = (values * 255).to(torch.uint8)
            # Write each (ph, pw) block at its own offset: an overlapping strided view whose entry i
            # is the block starting at flat pixel i, indexed by the blocks' first pixels.
            starts = n * img_h * img_w - (ph - 1) * img_w - (pw - 1)
            blocks = out.view(-1).as_strided((starts, ph, pw), (1, img_w, 1))
            first = (members * img_h + y_start[members]) * img_w + x_start[members]
            blocks.index_put_((first,), pasted)
    return out

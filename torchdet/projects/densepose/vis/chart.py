"""Visualisation of chart-based DensePose results: part index colouring and U / V contour
lines drawn over the image (numpy + OpenCV, no plotting library).

Shape shorthand: H x W the image, N detections.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..structures import DensePoseChartPredictorOutput

__all__ = ["densepose_to_iuv", "visualize_part_index", "visualize_uv_contours"]


def densepose_to_iuv(
    output: DensePoseChartPredictorOutput, boxes: torch.Tensor, image_size: tuple[int, int]
) -> np.ndarray:
    """Paste every detection's chart estimate into one image-sized IUV map.

    Args:
        output: N detections' outputs; boxes (Tensor[N, 4]): their XYXY boxes.
        image_size: (H, W).

    Returns:
        ndarray[3, H, W] float32: patch index I (0 background), U, V; later (lower-scoring, if
        sorted) detections do not overwrite earlier ones.
    """
    h, w = image_size
    iuv = np.zeros((3, h, w), dtype=np.float32)
    if len(output) != boxes.shape[0]:
        raise ValueError(f"densepose_to_iuv: {len(output)} outputs for {boxes.shape[0]} boxes")
    taken = np.zeros((h, w), dtype=bool)
    for k in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[k].tolist()
        xi0, yi0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        xi1, yi1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
        if xi1 <= xi0 or yi1 <= yi0:
            continue
        # Pixel centres of the covered region, in the box's [-1, 1] coordinates.
        gx = ((torch.arange(xi0, xi1) + 0.5) - x0) / max(x1 - x0, 1e-6) * 2 - 1
        gy = ((torch.arange(yi0, yi1) + 0.5) - y0) / max(y1 - y0, 1e-6) * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
        grid = grid.to(output.u.dtype)
        dp = output[k]

        def sample(t, grid=grid):
            return F.grid_sample(t, grid, mode="bilinear", align_corners=False)[0]

        fg = sample(dp.coarse_segm).argmax(0) > 0
        inside = (grid[0, ..., 0].abs() <= 1) & (grid[0, ..., 1].abs() <= 1)
        i = sample(dp.fine_segm).argmax(0) * (fg & inside)
        u = sample(dp.u).gather(0, i[None])[0]
        v = sample(dp.v).gather(0, i[None])[0]
        region = (slice(yi0, yi1), slice(xi0, xi1))
        free = ~taken[region] & (i.numpy() > 0)
        for c, t in enumerate((i.float(), u, v)):
            iuv[c][region][free] = t.numpy()[free]
        taken[region] |= free
    return iuv


def visualize_part_index(image: np.ndarray, iuv: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """Blend a colour per surface patch (OpenCV's "parula"-like JET map over 1..24) into
    ``image`` (ndarray[H, W, 3] uint8, BGR) where I > 0."""
    if image.shape[:2] != iuv.shape[1:]:
        raise ValueError(f"image {image.shape[:2]} and iuv {iuv.shape[1:]} sizes differ")
    i = iuv[0].astype(np.int64)
    colors = cv2.applyColorMap(
        np.clip(i * 255 // 24, 0, 255).astype(np.uint8)[..., None], cv2.COLORMAP_JET
    )
    out = image.copy()
    fg = i > 0
    out[fg] = (alpha * colors[fg] + (1 - alpha) * image[fg]).astype(np.uint8)
    return out


def visualize_uv_contours(
    image: np.ndarray, iuv: np.ndarray, levels: int = 10, thickness: int = 1
) -> np.ndarray:
    """Draw iso-U (blue) and iso-V (green) lines, ``levels`` per unit, inside the person
    (where I > 0), on a copy of ``image`` (ndarray[H, W, 3] uint8, BGR)."""
    if image.shape[:2] != iuv.shape[1:]:
        raise ValueError(f"image {image.shape[:2]} and iuv {iuv.shape[1:]} sizes differ")
    out = image.copy()
    fg = iuv[0] > 0
    for channel, color in ((1, (255, 0, 0)), (2, (0, 255, 0))):
        q = np.floor(iuv[channel] * levels).astype(np.int64)
        q[~fg] = -1
        # A contour pixel is one whose level (or patch) differs from a right / lower neighbour.
        edge = np.zeros_like(fg)
        edge[:, :-1] |= (q[:, :-1] != q[:, 1:]) | (iuv[0, :, :-1] != iuv[0, :, 1:])
        edge[:-1, :] |= (q[:-1, :] != q[1:, :]) | (iuv[0, :-1, :] != iuv[0, 1:, :])
        edge &= fg
        if thickness > 1:
            edge = cv2.dilate(edge.astype(np.uint8), np.ones((thickness, thickness))) > 0
        out[edge] = color
    return out

"""Keypoints: the ``Keypoints`` container and the heatmap encoding used by keypoint R-CNN.

Shape shorthand:
    N: number of instances (ROIs)
    K: number of keypoints per instance
    S: heatmap side
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, device
from torch.nn import functional as F

__all__ = ["Keypoints", "heatmaps_to_keypoints"]


class Keypoints:
    """Keypoint annotations or predictions: a ``Tensor[N, K, 3]`` of (x, y, visibility).

    Coordinates are in absolute floating-point pixels of the image, such that the pixel with
    integer index (i, j) covers [i, i + 1) x [j, j + 1) (the COCO convention after Detectron2
    adds 0.5 on loading). Visibility follows COCO: 0 not labelled, 1 labelled but not visible,
    2 visible; predictions may store scores there instead.
    """

    def __init__(self, keypoints: Tensor | np.ndarray | list[list[float]]):
        """
        Args:
            keypoints (Tensor[N, K, 3] or array-like): x, y, visibility per keypoint.
        """
        dev = keypoints.device if isinstance(keypoints, Tensor) else torch.device("cpu")
        keypoints = torch.as_tensor(keypoints, dtype=torch.float32, device=dev)
        if keypoints.dim() != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"Keypoints expects a Tensor[N, K, 3], got {tuple(keypoints.shape)}")
        self.tensor = keypoints

    def __len__(self) -> int:
        return self.tensor.size(0)

    def to(self, *args: Any, **kwargs: Any) -> Keypoints:
        return type(self)(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> device:
        return self.tensor.device

    def to_heatmap(self, boxes: Tensor, heatmap_size: int) -> tuple[Tensor, Tensor]:
        """Encode the keypoints as indices into ``S x S`` heatmaps over their boxes.

        Args:
            boxes (Tensor[N, 4] or Boxes): one box per instance, x0, y0, x1, y1.
            heatmap_size (int): S.

        Returns:
            heatmaps (Tensor[N, K] int64): flat index ``y * S + x`` of each keypoint in its
                box's heatmap (0 where invalid).
            valid (Tensor[N, K] int64): 1 where the keypoint is visible and inside its box.
        """
        return _keypoints_to_heatmap(self.tensor, boxes, heatmap_size)

    def __getitem__(self, item: int | slice | Tensor) -> Keypoints:
        """Index with an int (gives 1 instance), a slice, a bool mask or an index tensor."""
        if isinstance(item, int):
            return type(self)(self.tensor[item].unsqueeze(0))
        return type(self)(self.tensor[item])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_instances={len(self.tensor)})"

    @staticmethod
    def cat(keypoints_list: list[Keypoints]) -> Keypoints:
        """Concatenate a non-empty list of ``Keypoints`` with the same K."""
        if not isinstance(keypoints_list, (list, tuple)) or len(keypoints_list) == 0:
            raise ValueError("Keypoints.cat expects a non-empty list of Keypoints")
        for i, kp in enumerate(keypoints_list):
            if not isinstance(kp, Keypoints):
                raise TypeError(f"Keypoints.cat: element {i} is a {type(kp).__name__}")
        return type(keypoints_list[0])(torch.cat([kp.tensor for kp in keypoints_list], dim=0))


def _keypoints_to_heatmap(
    keypoints: Tensor, rois: Tensor, heatmap_size: int
) -> tuple[Tensor, Tensor]:
    """Discretise keypoints into ``S x S`` cells over their ROIs (Mask R-CNN's convention).

    A continuous coordinate c maps to cell ``floor((c - roi_start) * S / roi_size)``; a
    keypoint exactly on the far ROI edge goes to the last cell.

    Args:
        keypoints (Tensor[N, K, 3]): x, y, visibility.
        rois (Tensor[N, 4]): x0, y0, x1, y1.
        heatmap_size (int): S.

    Returns:
        heatmaps (Tensor[N, K] int64), valid (Tensor[N, K] int64); see ``Keypoints.to_heatmap``.
    """
    rois = getattr(rois, "tensor", rois)  # accept Boxes as well as Tensor[N, 4]
    if rois.numel() == 0:
        return rois.new().long(), rois.new().long()
    if rois.dim() != 2 or rois.shape[1] != 4 or rois.shape[0] != keypoints.shape[0]:
        raise ValueError(
            f"keypoints to heatmap: expected rois of shape ({keypoints.shape[0]}, 4), got "
            f"{tuple(rois.shape)}"
        )
    offset_x = rois[:, 0][:, None]
    offset_y = rois[:, 1][:, None]
    scale_x = (heatmap_size / (rois[:, 2] - rois[:, 0]))[:, None]
    scale_y = (heatmap_size / (rois[:, 3] - rois[:, 1]))[:, None]

    x = keypoints[..., 0]
    y = keypoints[..., 1]
    x_boundary = x == rois[:, 2][:, None]
    y_boundary = y == rois[:, 3][:, None]
    x = ((x - offset_x) * scale_x).floor().long()
    y = ((y - offset_y) * scale_y).floor().long()
    x[x_boundary] = heatmap_size - 1
    y[y_boundary] = heatmap_size - 1

    valid_loc = (x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size)
    vis = keypoints[..., 2] > 0
    valid = (valid_loc & vis).long()
    heatmaps = (y * heatmap_size + x) * valid
    return heatmaps, valid


@torch.no_grad()
def heatmaps_to_keypoints(maps: Tensor, rois: Tensor) -> Tensor:
    """Decode keypoint heatmaps predicted over ROIs into image coordinates.

    Each ROI's heatmaps are resized (bicubic, ``align_corners=False``) to the ROI's size in
    pixels, ``ceil`` of its width and height (at least 1); the argmax cell (i, j) gives the
    keypoint at ``(j + 0.5, i + 0.5)`` scaled back by ``size / ceil(size)`` and offset by the
    ROI corner. The score is the softmax over the resized map at the argmax, normalised by the
    sum over the *unresized* map, as in Detectron2, so scores of different-sized ROIs compare.

    Args:
        maps (Tensor[N, K, S, S]): predicted heatmap logits.
        rois (Tensor[N, 4]): x0, y0, x1, y1 of each ROI.

    Returns:
        Tensor[N, K, 4]: x, y, logit at the argmax, score.
    """
    if maps.dim() != 4:
        raise ValueError(f"heatmaps_to_keypoints: maps must be (N, K, S, S), got {maps.shape}")
    if rois.dim() != 2 or rois.shape != (maps.shape[0], 4):
        raise ValueError(
            f"heatmaps_to_keypoints: rois must be ({maps.shape[0]}, 4), got {tuple(rois.shape)}"
        )
    maps = maps.detach()
    rois = rois.detach()
    num_rois, num_keypoints = maps.shape[:2]
    xy_preds = maps.new_zeros(num_rois, num_keypoints, 4)
    if num_rois == 0:
        return xy_preds

    offset_x = rois[:, 0]
    offset_y = rois[:, 1]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil = widths.ceil()
    heights_ceil = heights.ceil()
    out_sizes = torch.stack([heights_ceil, widths_ceil], dim=1).long().tolist()

    # The resize output size differs per ROI, so this loop cannot be batched; it only keeps
    # the argmax of each resized map.
    x_int = torch.empty(num_rois, num_keypoints, dtype=torch.long, device=maps.device)
    y_int = torch.empty_like(x_int)
    logits = maps.new_empty(num_rois, num_keypoints)
    for i, (out_h, out_w) in enumerate(out_sizes):
        roi_map = F.interpolate(
            maps[i : i + 1], size=(out_h, out_w), mode="bicubic", align_corners=False
        ).squeeze(0)  # (K, out_h, out_w)
        flat = roi_map.reshape(num_keypoints, -1)
        pos = flat.argmax(dim=1)  # the first maximum, as in Detectron2
        logit = flat.amax(dim=1)
        x_int[i] = pos % out_w
        y_int[i] = pos // out_w
        logits[i] = logit

    # Softmax score at the argmax: exp(max - max) / sum(exp(maps - max)) over the S x S map.
    denom = (maps - logits[:, :, None, None]).exp().sum(dim=(2, 3))
    scores = 1.0 / denom

    width_corrections = (widths / widths_ceil)[:, None]
    height_corrections = (heights / heights_ceil)[:, None]
    xy_preds[:, :, 0] = (x_int.to(maps.dtype) + 0.5) * width_corrections + offset_x[:, None]
    xy_preds[:, :, 1] = (y_int.to(maps.dtype) + 0.5) * height_corrections + offset_y[:, None]
    xy_preds[:, :, 2] = logits
    xy_preds[:, :, 3] = scores
    return xy_preds

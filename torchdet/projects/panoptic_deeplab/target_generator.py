"""Panoptic-DeepLab's training targets from a COCO-panoptic id map: semantic labels and
per-pixel weights, a Gaussian centre heatmap and (dy, dx) offsets to instance centres."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["PanopticDeepLabTargetGenerator"]


class PanopticDeepLabTargetGenerator:
    """Targets of one image.

    Args:
        ignore_label: semantic label of pixels in no segment.
        thing_ids: contiguous ids of the thing classes.
        sigma: standard deviation (pixels) of the centre Gaussian.
        ignore_stuff_in_offset: zero offset weight on stuff.
        small_instance_area, small_instance_weight: semantic weight of pixels of instances
            smaller than the area.
        ignore_crowd_in_semantic: leave crowd regions at ``ignore_label``.
    """

    def __init__(
        self,
        ignore_label: int,
        thing_ids: Iterable[int],
        sigma: int = 8,
        ignore_stuff_in_offset: bool = False,
        small_instance_area: int = 0,
        small_instance_weight: float = 1,
        ignore_crowd_in_semantic: bool = False,
    ) -> None:
        self.ignore_label = ignore_label
        self.thing_ids = set(thing_ids)
        self.ignore_stuff_in_offset = ignore_stuff_in_offset
        self.small_instance_area = small_instance_area
        self.small_instance_weight = small_instance_weight
        self.ignore_crowd_in_semantic = ignore_crowd_in_semantic
        self.sigma = sigma
        # A (6 sigma + 3)^2 Gaussian peaking (value 1) at its centre pixel.
        size = 6 * sigma + 3
        x = np.arange(0, size, 1, float)
        y = x[:, None]
        c = 3 * sigma + 1
        self.g = np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))

    def __call__(self, panoptic: np.ndarray, segments_info: list[dict]) -> dict:
        """
        Args:
            panoptic (ndarray[H, W] int): segment id per pixel.
            segments_info: dicts with ``id``, contiguous ``category_id`` and ``iscrowd``.

        Returns:
            dict with ``sem_seg`` (Tensor[H, W] int64), ``center`` (Tensor[H, W]),
            ``center_points`` (list of (y, x)), ``offset`` (Tensor[2, H, W]),
            ``sem_seg_weights`` (Tensor[H, W]), ``center_weights`` and ``offset_weights``
            (Tensor[1, H, W]).
        """
        if panoptic.ndim != 2:
            raise ValueError(f"panoptic must be an (H, W) id map, got shape {panoptic.shape}")
        height, width = panoptic.shape
        semantic = np.full((height, width), self.ignore_label, dtype=np.int64)
        center = np.zeros((height, width), dtype=np.float32)
        offset = np.zeros((2, height, width), dtype=np.float32)
        semantic_weights = np.ones((height, width), dtype=np.float32)
        center_weights = np.zeros((height, width), dtype=np.float32)
        offset_weights = np.zeros((height, width), dtype=np.float32)
        center_pts = []
        for seg in segments_info:
            for key in ("id", "category_id"):
                if key not in seg:
                    raise KeyError(f"PanopticDeepLabTargetGenerator: segment {seg} has no {key!r}")
            cat_id = seg["category_id"]
            crowd = bool(seg.get("iscrowd", 0))
            mask = panoptic == seg["id"]
            if not (self.ignore_crowd_in_semantic and crowd):
                semantic[mask] = cat_id
            if not crowd:
                center_weights[mask] = 1
                if not self.ignore_stuff_in_offset or cat_id in self.thing_ids:
                    offset_weights[mask] = 1
            if cat_id not in self.thing_ids:
                continue
            ys, xs = np.nonzero(mask)
            if len(ys) == 0:  # cropped away
                continue
            if len(ys) < self.small_instance_area:
                semantic_weights[mask] = self.small_instance_weight
            cy, cx = ys.mean(), xs.mean()
            center_pts.append([cy, cx])
            y, x = int(round(cy)), int(round(cx))
            s = self.sigma
            ul = int(np.round(x - 3 * s - 1)), int(np.round(y - 3 * s - 1))
            br = int(np.round(x + 3 * s + 2)), int(np.round(y + 3 * s + 2))
            gx0, gx1 = max(0, -ul[0]), min(br[0], width) - ul[0]
            gy0, gy1 = max(0, -ul[1]), min(br[1], height) - ul[1]
            x0, x1 = max(0, ul[0]), min(br[0], width)
            y0, y1 = max(0, ul[1]), min(br[1], height)
            center[y0:y1, x0:x1] = np.maximum(center[y0:y1, x0:x1], self.g[gy0:gy1, gx0:gx1])
            offset[0][ys, xs] = cy - ys
            offset[1][ys, xs] = cx - xs
        return {
            "sem_seg": torch.as_tensor(semantic),
            "center": torch.as_tensor(center),
            "center_points": center_pts,
            "offset": torch.as_tensor(offset),
            "sem_seg_weights": torch.as_tensor(semantic_weights),
            "center_weights": torch.as_tensor(center_weights[None]),
            "offset_weights": torch.as_tensor(offset_weights[None]),
        }

"""Rotated boxes: the ``RotatedBoxes`` container and their pairwise IoU.

A rotated box is ``(x_center, y_center, width, height, angle)`` in absolute pixels, with the
angle in degrees, counter-clockwise as seen on the screen (where y points down). At angle 0
the box is axis-aligned with ``width`` along x. Rotating the box's width axis by ``angle``
counter-clockwise gives (cos, -sin) in pixel coordinates.

Shape shorthand:
    N, M: number of boxes
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, device

from torchdet.layers.rotated_boxes import pairwise_iou_rotated as _pairwise_iou_rotated_kernel

from .boxes import Boxes, _as_box_tensor

__all__ = ["RotatedBoxes", "pairwise_iou"]


class RotatedBoxes(Boxes):
    """A list of rotated boxes stored as one ``Tensor[N, 5]`` (cx, cy, w, h, angle), float32.

    Attributes:
        tensor (Tensor[N, 5]): x_center, y_center, width, height, angle in degrees.
    """

    def __init__(self, tensor: Tensor | np.ndarray | list):
        """
        Args:
            tensor (Tensor[N, 5] or array-like): cx, cy, w, h, angle (degrees, counter-clockwise).
                Any empty input is read as zero boxes.
        """
        self.tensor = _as_box_tensor(tensor, 5, type(self).__name__)

    def area(self) -> Tensor:
        """Tensor[N]: width * height of each box."""
        return self.tensor[:, 2] * self.tensor[:, 3]

    def normalize_angles(self) -> None:
        """Bring the angles into [-180, 180) in place."""
        self.tensor[:, 4] = (self.tensor[:, 4] + 180.0) % 360.0 - 180.0

    def clip(self, box_size: tuple[int, int], clip_angle_threshold: float = 1.0) -> None:
        """Clip nearly horizontal boxes in place to ``[0, width] x [0, height]``.

        Only boxes with ``|angle| <= clip_angle_threshold`` (after normalising angles) are
        clipped, as if they were axis-aligned; clipping a truly rotated box has no
        rotated-box answer, so those are left unchanged (as in Detectron2).

        Args:
            box_size (height, width): the clipping window.
            clip_angle_threshold (float): in degrees.
        """
        h, w = box_size
        self.normalize_angles()
        idx = torch.where(torch.abs(self.tensor[:, 4]) <= clip_angle_threshold)[0]
        t = self.tensor
        x1 = (t[idx, 0] - t[idx, 2] / 2.0).clamp(min=0, max=w)
        y1 = (t[idx, 1] - t[idx, 3] / 2.0).clamp(min=0, max=h)
        x2 = (t[idx, 0] + t[idx, 2] / 2.0).clamp(min=0, max=w)
        y2 = (t[idx, 1] + t[idx, 3] / 2.0).clamp(min=0, max=h)
        t[idx, 0] = (x1 + x2) / 2.0
        t[idx, 1] = (y1 + y2) / 2.0
        # min() so that rounding never makes a box larger than it was
        t[idx, 2] = torch.min(t[idx, 2], x2 - x1)
        t[idx, 3] = torch.min(t[idx, 3], y2 - y1)

    def nonempty(self, threshold: float = 0.0) -> Tensor:
        """Tensor[N] bool: boxes whose width and height both exceed ``threshold``."""
        return (self.tensor[:, 2] > threshold) & (self.tensor[:, 3] > threshold)

    def inside_box(self, box_size: tuple[int, int], boundary_threshold: int = 0) -> Tensor:
        """Tensor[N] bool: boxes whose axis-aligned hull lies inside ``[0, w) x [0, h)``.

        Args:
            box_size (height, width): the reference window.
            boundary_threshold: boxes may extend this many pixels beyond the window.
        """
        height, width = box_size
        t = self.tensor
        cnt_x, cnt_y = t[..., 0], t[..., 1]
        half_w, half_h = t[..., 2] / 2.0, t[..., 3] / 2.0
        a = t[..., 4]
        c = torch.abs(torch.cos(a * math.pi / 180.0))
        s = torch.abs(torch.sin(a * math.pi / 180.0))
        # half extents of the axis-aligned hull of the rotated box
        max_rect_dx = c * half_w + s * half_h
        max_rect_dy = c * half_h + s * half_w
        return (
            (cnt_x - max_rect_dx >= -boundary_threshold)
            & (cnt_y - max_rect_dy >= -boundary_threshold)
            & (cnt_x + max_rect_dx < width + boundary_threshold)
            & (cnt_y + max_rect_dy < height + boundary_threshold)
        )

    def get_centers(self) -> Tensor:
        """Tensor[N, 2]: the box centers (x, y)."""
        return self.tensor[:, :2]

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale the boxes in place by ``scale_x`` along x and ``scale_y`` along y.

        With unequal factors a rotated rectangle becomes a parallelogram; as in Detectron2 the
        result keeps the lengths of the scaled width and height vectors and takes the angle of
        the scaled height vector.
        """
        t = self.tensor
        t[:, 0] *= scale_x
        t[:, 1] *= scale_y
        theta = t[:, 4] * math.pi / 180.0
        c, s = torch.cos(theta), torch.sin(theta)
        # The width vector (w cos, -w sin) becomes (sx w cos, -sy w sin), the height vector
        # (h sin, h cos) becomes (sx h sin, sy h cos).
        t[:, 2] *= torch.sqrt((scale_x * c) ** 2 + (scale_y * s) ** 2)
        t[:, 3] *= torch.sqrt((scale_x * s) ** 2 + (scale_y * c) ** 2)
        t[:, 4] = torch.atan2(scale_x * s, scale_y * c) * 180 / math.pi

    @property
    def device(self) -> device:
        return self.tensor.device

    def __iter__(self) -> Iterator[Tensor]:
        """Yield each box as a Tensor[5]."""
        yield from self.tensor


def pairwise_iou(boxes1: RotatedBoxes, boxes2: RotatedBoxes) -> Tensor:
    """Intersection over union of every pair of rotated boxes (exported as
    ``torchdet.structures.pairwise_iou_rotated``).

    Args:
        boxes1, boxes2 (RotatedBoxes): N and M boxes.

    Returns:
        Tensor[N, M]: IoU values (0 for boxes with area below 1e-14).
    """
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        if not isinstance(b, RotatedBoxes):
            raise TypeError(f"pairwise_iou_rotated: {name} must be RotatedBoxes, got {type(b)}")
    return _pairwise_iou_rotated_kernel(boxes1.tensor, boxes2.tensor)

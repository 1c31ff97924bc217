"""Axis-aligned boxes: the ``Boxes`` container, ``BoxMode`` conversions and pairwise overlaps.

Shape shorthand:
    N, M: number of boxes
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from enum import IntEnum, unique
from typing import Any

import numpy as np
import torch
from torch import Tensor, device

__all__ = [
    "BoxMode",
    "Boxes",
    "pairwise_intersection",
    "pairwise_iou",
    "pairwise_ioa",
    "pairwise_point_box_distance",
    "matched_pairwise_iou",
]

_RawBoxType = list[float] | tuple[float, ...] | Tensor | np.ndarray


@unique
class BoxMode(IntEnum):
    """How a box is represented.

    - ``XYXY_ABS``: x0, y0, x1, y1 in absolute floating-point pixel coordinates.
    - ``XYWH_ABS``: x0, y0, width, height in absolute pixels.
    - ``XYXY_REL``, ``XYWH_REL``: the same relative to the image size (not supported by
      :meth:`convert`, as in Detectron2).
    - ``XYWHA_ABS``: x_center, y_center, width, height, angle in degrees (counter-clockwise),
      in absolute pixels; the rotated-box format.
    """

    XYXY_ABS = 0
    XYWH_ABS = 1
    XYXY_REL = 2
    XYWH_REL = 3
    XYWHA_ABS = 4

    @staticmethod
    def convert(box: _RawBoxType, from_mode: BoxMode, to_mode: BoxMode) -> _RawBoxType:
        """Convert boxes between modes, keeping the container type.

        Args:
            box: one box as a list/tuple of 4 or 5 numbers, or a ``Tensor[N, k]`` /
                ``np.ndarray[N, k]`` with k = 4 (or 5 for ``XYWHA_ABS``).
            from_mode, to_mode (BoxMode): source and target modes.

        Returns:
            The converted box(es), of the same type as ``box`` (a new object).
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return box
        relative = (BoxMode.XYXY_REL, BoxMode.XYWH_REL)
        if from_mode in relative or to_mode in relative:
            raise NotImplementedError(
                f"BoxMode.convert: relative modes are not supported ({from_mode.name} -> "
                f"{to_mode.name})"
            )

        original_type = type(box)
        is_numpy = isinstance(box, np.ndarray)
        single_box = isinstance(box, (list, tuple))
        if single_box:
            if len(box) not in (4, 5):
                raise ValueError(
                    "BoxMode.convert takes either a k-tuple/list or a Tensor[N, k] with k = 4 "
                    f"or 5, got a {original_type.__name__} of length {len(box)}"
                )
            arr = torch.tensor(box)[None, :]
        elif is_numpy:
            arr = torch.from_numpy(np.asarray(box)).clone()
        elif isinstance(box, Tensor):
            arr = box.clone()
        else:
            raise TypeError(
                "BoxMode.convert: box must be a list, tuple, np.ndarray or Tensor, "
                f"got {original_type.__name__}"
            )
        if arr.dim() != 2 or arr.shape[-1] not in (4, 5):
            raise ValueError(
                f"BoxMode.convert: expected boxes of shape (N, 4) or (N, 5), got {tuple(arr.shape)}"
            )
        arr = _convert_tensor(arr, from_mode, to_mode)

        if single_box:
            return original_type(arr.flatten().tolist())
        if is_numpy:
            return arr.numpy()
        return arr


def _convert_tensor(arr: Tensor, from_mode: BoxMode, to_mode: BoxMode) -> Tensor:
    """Mode conversion of a (N, 4/5) tensor that ``convert`` already copied (edited in place)."""
    expected = 5 if from_mode == BoxMode.XYWHA_ABS else 4
    if arr.shape[-1] != expected:
        raise ValueError(
            f"BoxMode.convert: {from_mode.name} boxes have {expected} values, got shape "
            f"{tuple(arr.shape)}"
        )
    if from_mode == BoxMode.XYWHA_ABS and to_mode == BoxMode.XYXY_ABS:
        # The axis-aligned bounding box of the rotated box; computed in float64 like Detectron2.
        original_dtype = arr.dtype
        arr = arr.double()
        w, h, a = arr[:, 2], arr[:, 3], arr[:, 4]
        c = torch.abs(torch.cos(a * math.pi / 180.0))
        s = torch.abs(torch.sin(a * math.pi / 180.0))
        new_w = c * w + s * h
        new_h = c * h + s * w
        x0 = arr[:, 0] - new_w / 2.0
        y0 = arr[:, 1] - new_h / 2.0
        return torch.stack([x0, y0, x0 + new_w, y0 + new_h], dim=1).to(original_dtype)
    if from_mode == BoxMode.XYWH_ABS and to_mode == BoxMode.XYWHA_ABS:
        arr[:, 0] += arr[:, 2] / 2.0
        arr[:, 1] += arr[:, 3] / 2.0
        return torch.cat([arr, arr.new_zeros(arr.shape[0], 1)], dim=1)
    if from_mode == BoxMode.XYXY_ABS and to_mode == BoxMode.XYWHA_ABS:
        arr[:, 2] -= arr[:, 0]
        arr[:, 3] -= arr[:, 1]
        arr[:, 0] += arr[:, 2] / 2.0
        arr[:, 1] += arr[:, 3] / 2.0
        return torch.cat([arr, arr.new_zeros(arr.shape[0], 1)], dim=1)
    if from_mode == BoxMode.XYWH_ABS and to_mode == BoxMode.XYXY_ABS:
        arr[:, 2] += arr[:, 0]
        arr[:, 3] += arr[:, 1]
        return arr
    if from_mode == BoxMode.XYXY_ABS and to_mode == BoxMode.XYWH_ABS:
        arr[:, 2] -= arr[:, 0]
        arr[:, 3] -= arr[:, 1]
        return arr
    raise NotImplementedError(
        f"Conversion from BoxMode {from_mode.name} to {to_mode.name} is not supported"
    )


def _as_box_tensor(tensor: Any, box_dim: int, cls_name: str) -> Tensor:
    """Validate/convert the constructor argument of ``Boxes``/``RotatedBoxes``: float32 (N, k)."""
    if isinstance(tensor, Tensor):
        tensor = tensor.to(torch.float32)
    else:
        tensor = torch.as_tensor(tensor, dtype=torch.float32, device=torch.device("cpu"))
    if tensor.numel() == 0:
        # Any empty input (e.g. torch.zeros(0) or []) is read as "no boxes".
        tensor = tensor.reshape((-1, box_dim))
    if tensor.dim() != 2 or tensor.shape[-1] != box_dim:
        raise ValueError(f"{cls_name} expects a Tensor[N, {box_dim}], got {tuple(tensor.shape)}")
    return tensor


class Boxes:
    """A list of axis-aligned boxes stored as one ``Tensor[N, 4]`` (x0, y0, x1, y1, float32).

    Supports indexing and moving between devices; all methods are vectorised.

    Attributes:
        tensor (Tensor[N, 4]): float32 boxes in XYXY_ABS mode.
    """

    def __init__(self, tensor: Tensor | np.ndarray | list):
        """
        Args:
            tensor (Tensor[N, 4] or array-like): x0, y0, x1, y1 in absolute pixels. Any empty
                input is read as zero boxes.
        """
        self.tensor = _as_box_tensor(tensor, 4, type(self).__name__)

    def clone(self) -> Boxes:
        return type(self)(self.tensor.clone())

    def to(self, device: device | str) -> Boxes:
        return type(self)(self.tensor.to(device=device))

    def area(self) -> Tensor:
        """Tensor[N]: width * height of each box (may be negative for inverted boxes)."""
        box = self.tensor
        return (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])

    def clip(self, box_size: tuple[int, int]) -> None:
        """Clip the boxes in place to ``[0, width] x [0, height]``.

        Args:
            box_size (height, width): the clipping window.
        """
        if not torch.isfinite(self.tensor).all():
            raise ValueError("Boxes.clip: the box tensor contains infinite or NaN values")
        h, w = box_size
        x0 = self.tensor[:, 0].clamp(min=0, max=w)
        y0 = self.tensor[:, 1].clamp(min=0, max=h)
        x1 = self.tensor[:, 2].clamp(min=0, max=w)
        y1 = self.tensor[:, 3].clamp(min=0, max=h)
        self.tensor = torch.stack((x0, y0, x1, y1), dim=-1)

    def nonempty(self, threshold: float = 0.0) -> Tensor:
        """Tensor[N] bool: boxes whose width and height both exceed ``threshold``."""
        box = self.tensor
        widths = box[:, 2] - box[:, 0]
        heights = box[:, 3] - box[:, 1]
        return (widths > threshold) & (heights > threshold)

    def __getitem__(self, item: int | slice | Tensor) -> Boxes:
        """Index with an int (gives 1 box), a slice, a bool mask or an index tensor/list.

        The result may share storage with this object.
        """
        if isinstance(item, int):
            return type(self)(self.tensor[item].view(1, -1))
        b = self.tensor[item]
        if b.dim() != 2:
            raise IndexError(
                f"Indexing {type(self).__name__} with {item} gives shape {tuple(b.shape)}, "
                "not a list of boxes"
            )
        return type(self)(b)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tensor})"

    def inside_box(self, box_size: tuple[int, int], boundary_threshold: int = 0) -> Tensor:
        """Tensor[N] bool: boxes lying inside ``[0, width) x [0, height)``.

        Args:
            box_size (height, width): the reference window.
            boundary_threshold: boxes may extend this many pixels beyond the window.
        """
        height, width = box_size
        t = self.tensor
        return (
            (t[..., 0] >= -boundary_threshold)
            & (t[..., 1] >= -boundary_threshold)
            & (t[..., 2] < width + boundary_threshold)
            & (t[..., 3] < height + boundary_threshold)
        )

    def get_centers(self) -> Tensor:
        """Tensor[N, 2]: the box centers (x, y)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale the box coordinates in place (x by ``scale_x``, y by ``scale_y``)."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    @classmethod
    def cat(cls, boxes_list: list[Boxes]) -> Boxes:
        """Concatenate a list of ``Boxes`` (an empty list gives zero boxes)."""
        if not isinstance(boxes_list, (list, tuple)):
            raise TypeError(f"{cls.__name__}.cat expects a list, got {type(boxes_list).__name__}")
        if len(boxes_list) == 0:
            return cls(torch.empty(0))
        for i, b in enumerate(boxes_list):
            if not isinstance(b, cls):
                raise TypeError(
                    f"{cls.__name__}.cat: element {i} is a {type(b).__name__}, not {cls.__name__}"
                )
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))

    @property
    def device(self) -> device:
        return self.tensor.device

    def __iter__(self) -> Iterator[Tensor]:
        """Yield each box as a Tensor[4]."""
        yield from self.tensor


def _check_boxes_arg(boxes: Any, name: str, fn: str) -> Tensor:
    if not isinstance(boxes, Boxes):
        raise TypeError(f"{fn}: {name} must be a Boxes, got {type(boxes).__name__}")
    return boxes.tensor


def pairwise_intersection(boxes1: Boxes, boxes2: Boxes) -> Tensor:
    """Intersection area of every pair of boxes.

    Args:
        boxes1, boxes2 (Boxes): N and M boxes.

    Returns:
        Tensor[N, M]: intersection areas (0 for disjoint boxes).
    """
    b1 = _check_boxes_arg(boxes1, "boxes1", "pairwise_intersection")
    b2 = _check_boxes_arg(boxes2, "boxes2", "pairwise_intersection")
    width_height = torch.min(b1[:, None, 2:], b2[:, 2:]) - torch.max(b1[:, None, :2], b2[:, :2])
    width_height.clamp_(min=0)  # (N, M, 2)
    return width_height.prod(dim=2)


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> Tensor:
    """Intersection over union of every pair of boxes (0 where they do not intersect).

    Args:
        boxes1, boxes2 (Boxes): N and M boxes in XYXY_ABS mode.

    Returns:
        Tensor[N, M]: IoU values.
    """
    area1 = boxes1.area() if isinstance(boxes1, Boxes) else None
    area2 = boxes2.area() if isinstance(boxes2, Boxes) else None
    inter = pairwise_intersection(boxes1, boxes2)
    # Only divide where there is an intersection, so empty boxes give 0 rather than nan.
    return torch.where(
        inter > 0,
        inter / (area1[:, None] + area2 - inter),
        torch.zeros(1, dtype=inter.dtype, device=inter.device),
    )


def pairwise_ioa(boxes1: Boxes, boxes2: Boxes) -> Tensor:
    """Intersection over the area of ``boxes2`` for every pair (0 where they do not intersect).

    Args:
        boxes1, boxes2 (Boxes): N and M boxes in XYXY_ABS mode.

    Returns:
        Tensor[N, M]: IoA values.
    """
    area2 = boxes2.area() if isinstance(boxes2, Boxes) else None
    inter = pairwise_intersection(boxes1, boxes2)
    return torch.where(
        inter > 0, inter / area2, torch.zeros(1, dtype=inter.dtype, device=inter.device)
    )


def pairwise_point_box_distance(points: Tensor, boxes: Boxes) -> Tensor:
    """Distances from each point to the 4 sides of each box (negative when outside).

    Args:
        points (Tensor[N, 2]): x, y.
        boxes (Boxes): M boxes.

    Returns:
        Tensor[N, M, 4]: distances to the left, top, right and bottom sides.
    """
    if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[-1] != 2:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"pairwise_point_box_distance: points must be a Tensor[N, 2], got {shape}")
    b = _check_boxes_arg(boxes, "boxes", "pairwise_point_box_distance")
    x, y = points.unsqueeze(dim=2).unbind(dim=1)  # (N, 1) each
    x0, y0, x1, y1 = b.unsqueeze(dim=0).unbind(dim=2)  # (1, M) each
    return torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)


def matched_pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> Tensor:
    """IoU of the i-th box of ``boxes1`` with the i-th box of ``boxes2``.

    Args:
        boxes1, boxes2 (Boxes): N boxes each.

    Returns:
        Tensor[N]: IoU values.
    """
    b1 = _check_boxes_arg(boxes1, "boxes1", "matched_pairwise_iou")
    b2 = _check_boxes_arg(boxes2, "boxes2", "matched_pairwise_iou")
    if len(boxes1) != len(boxes2):
        raise ValueError(
            "matched_pairwise_iou: boxlists should have the same number of entries, got "
            f"{len(boxes1)} and {len(boxes2)}"
        )
    area1 = boxes1.area()
    area2 = boxes2.area()
    lt = torch.max(b1[:, :2], b2[:, :2])
    rb = torch.min(b1[:, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)  # (N, 2)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (area1 + area2 - inter)

"""Deterministic transforms: the ``Transform`` interface and the geometric basics.

A ``Transform`` holds fixed parameters (no randomness) and applies them consistently to an image
and to every annotation type of that image. Shape shorthand used below:

- image: ``ndarray[H, W]`` or ``ndarray[H, W, C]`` (uint8 or float)
- coords: ``ndarray[N, 2]`` float, ``(x, y)`` in absolute pixels
- boxes: ``ndarray[N, 4]`` float, ``x0, y0, x1, y1`` in absolute pixels
- polygons: list of ``ndarray[K, 2]``
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "BlendTransform",
    "CropTransform",
    "HFlipTransform",
    "NoOpTransform",
    "PadTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
]


class Transform:
    """Base class of deterministic transforms.

    Subclasses implement ``apply_image`` and ``apply_coords``; boxes, polygons and segmentation
    derive from them by default. Other data types can be added with :meth:`register_type`.
    """

    def _set_attributes(self, params: dict[str, Any] | None = None) -> None:
        """Store the constructor arguments (``locals()``) as attributes, except ``self``."""
        if params:
            for k, v in params.items():
                if k != "self" and not k.startswith("_"):
                    setattr(self, k, v)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Segmentation maps follow the image (subclasses use nearest interpolation)."""
        return self.apply_image(segmentation)

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        """Transform axis-aligned boxes through their 4 corners, then take the enclosing box.

        Args:
            box (ndarray[N, 4]): x0, y0, x1, y1 in absolute pixels.

        Returns:
            ndarray[N, 4]: the tight box around the transformed corners (exact for flips,
            resizes and crops; an enclosing box for rotations).
        """
        box = np.asarray(box)
        corner_idx = np.array([[0, 1], [2, 1], [0, 3], [2, 3]]).reshape(-1)
        corners = box[:, corner_idx].reshape(-1, 2)  # (N*4, 2)
        corners = self.apply_coords(corners).reshape(-1, 4, 2)
        return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)

    def apply_polygons(self, polygons: list[np.ndarray]) -> list[np.ndarray]:
        """Transform each polygon (``ndarray[K, 2]``) as coordinates."""
        return [self.apply_coords(p) for p in polygons]

    @classmethod
    def register_type(cls, data_type: str, func: Callable | None = None):
        """Add ``apply_<data_type>`` to this transform class.

        ``func(transform, data)`` returns the transformed data. Usable as a decorator when
        ``func`` is omitted.
        """
        if func is None:

            def wrapper(decorated: Callable) -> Callable:
                cls.register_type(data_type, decorated)
                return decorated

            return wrapper
        if not callable(func):
            raise TypeError(f"register_type({data_type!r}) needs a callable, got {type(func)}")
        n_params = len(inspect.signature(func).parameters)
        if n_params != 2:
            raise TypeError(
                f"register_type({data_type!r}): func must take (transform, data), "
                f"it takes {n_params} parameters"
            )
        setattr(cls, "apply_" + data_type, func)
        return None

    def inverse(self) -> Transform:
        """The inverse transform; raises ``NotImplementedError`` when it is not invertible."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse")

    def __repr__(self) -> str:
        try:
            sig = inspect.signature(self.__init__)
        except (TypeError, ValueError):
            return super().__repr__()
        items = []
        for name, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or not hasattr(self, name):
                continue
            value = getattr(self, name)
            if param.default is not param.empty and _same_value(value, param.default):
                continue
            text = repr(value)
            if isinstance(value, np.ndarray) and value.size > 8:
                text = f"ndarray{value.shape}"
            items.append(f"{name}={text}")
        return f"{type(self).__name__}({', '.join(items)})"

    __str__ = __repr__


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


class TransformList(Transform):
    """A sequence of transforms applied in order; itself a ``Transform``."""

    def __init__(self, transforms: list[Transform]):
        super().__init__()
        flat: list[Transform] = []
        for t in transforms:
            if isinstance(t, TransformList):
                flat.extend(t.transforms)
            elif isinstance(t, Transform):
                flat.append(t)
            else:
                raise TypeError(f"TransformList takes Transform objects, got {type(t)}: {t!r}")
        self.transforms = flat

    def _apply(self, x: Any, meth: str) -> Any:
        for t in self.transforms:
            x = getattr(t, meth)(x)
        return x

    def __getattribute__(self, name: str):
        # apply_* of a type registered on the members (e.g. "rotated_box") works on the list too.
        if name.startswith("apply_"):
            return lambda x: self._apply(x, name)
        return super().__getattribute__(name)

    def __add__(self, other: Transform) -> TransformList:
        others = other.transforms if isinstance(other, TransformList) else [other]
        return TransformList(self.transforms + others)

    def __iadd__(self, other: Transform) -> TransformList:
        others = other.transforms if isinstance(other, TransformList) else [other]
        self.transforms.extend(others)
        return self

    def __radd__(self, other: Transform) -> TransformList:
        others = other.transforms if isinstance(other, TransformList) else [other]
        return TransformList(others + self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, idx: int) -> Transform:
        return self.transforms[idx]

    def inverse(self) -> TransformList:
        return TransformList([t.inverse() for t in reversed(self.transforms)])

    def __repr__(self) -> str:
        return "TransformList[{}]".format(", ".join(repr(t) for t in self.transforms))

    __str__ = __repr__


class NoOpTransform(Transform):
    """Leaves every data type unchanged."""

    def __init__(self):
        super().__init__()

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def inverse(self) -> Transform:
        return self

    def __getattr__(self, name: str):
        # Any registered or future data type passes through unchanged.
        if name.startswith("apply_"):
            return lambda x: x
        raise AttributeError(f"NoOpTransform has no attribute {name!r}")


def _flip(img: np.ndarray | torch.Tensor, axis: int) -> np.ndarray | torch.Tensor:
    if isinstance(img, torch.Tensor):
        # Tensors are (..., H, W): the image axis counts from the end.
        return img.flip(-2 if axis == 0 else -1)
    return np.flip(img, axis=axis)


class HFlipTransform(Transform):
    """Horizontal flip of an image ``width`` pixels wide: ``x -> width - x``."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return _flip(img, 1)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if coords.dtype.kind != "f" else coords.dtype)
        coords[:, 0] = self.width - coords[:, 0]
        return coords

    def apply_rotated_box(self, rotated_boxes: np.ndarray) -> np.ndarray:
        """Boxes ``ndarray[N, 5]`` (cx, cy, w, h, angle in degrees, counter-clockwise)."""
        boxes = np.array(rotated_boxes, dtype=np.float64)
        boxes[:, 0] = self.width - boxes[:, 0]
        boxes[:, 4] = -boxes[:, 4]
        return boxes

    def inverse(self) -> Transform:
        return self


class VFlipTransform(Transform):
    """Vertical flip of an image ``height`` pixels tall: ``y -> height - y``."""

    def __init__(self, height: int):
        super().__init__()
        self.height = height

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return _flip(img, 0)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if coords.dtype.kind != "f" else coords.dtype)
        coords[:, 1] = self.height - coords[:, 1]
        return coords

    def apply_rotated_box(self, rotated_boxes: np.ndarray) -> np.ndarray:
        """Boxes ``ndarray[N, 5]`` (cx, cy, w, h, angle in degrees, counter-clockwise)."""
        boxes = np.array(rotated_boxes, dtype=np.float64)
        boxes[:, 1] = self.height - boxes[:, 1]
        boxes[:, 4] = -boxes[:, 4]
        return boxes

    def inverse(self) -> Transform:
        return self


def _clip_polygon(poly: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Sutherland-Hodgman clipping of one polygon ``ndarray[K, 2]`` to a rectangle.

    Each of the 4 half-planes is handled with array operations over all vertices. A non-convex
    polygon cut into pieces comes back as one polygon joined along the rectangle border; the
    joins have zero area, so its rasterised mask equals the exact intersection.
    """
    planes = ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False))
    for axis, bound, keep_greater in planes:
        if len(poly) == 0:
            break
        cur = poly
        prev = np.roll(poly, 1, axis=0)
        inside = cur[:, axis] >= bound if keep_greater else cur[:, axis] <= bound
        prev_inside = np.roll(inside, 1)
        crossing = inside != prev_inside
        denom = cur[:, axis] - prev[:, axis]
        t = np.divide(bound - prev[:, axis], denom, out=np.zeros_like(denom), where=crossing)
        inter = prev + t[:, None] * (cur - prev)
        inter[:, axis] = bound  # exact on the border despite rounding
        # Per vertex: optionally the edge's crossing point, then the vertex if it is inside.
        candidates = np.stack([inter, cur], axis=1).reshape(-1, 2)
        keep = np.stack([crossing, inside], axis=1).reshape(-1)
        poly = candidates[keep]
    return poly


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


class CropTransform(Transform):
    """Crop the window ``[x0, x0 + w) x [y0, y0 + h)``.

    ``orig_w``/``orig_h`` (the input size) are only needed for :meth:`inverse`.
    """

    def __init__(
        self,
        x0: int,
        y0: int,
        w: int,
        h: int,
        orig_w: int | None = None,
        orig_h: int | None = None,
    ):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if isinstance(img, torch.Tensor):
            return img[..., self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]
        return img[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if coords.dtype.kind != "f" else coords.dtype)
        coords[:, 0] -= self.x0
        coords[:, 1] -= self.y0
        return coords

    def apply_rotated_box(self, rotated_boxes: np.ndarray) -> np.ndarray:
        """Shift the centres of ``ndarray[N, 5]`` rotated boxes (no clipping, as for boxes)."""
        boxes = np.array(rotated_boxes, dtype=np.float64)
        boxes[:, :2] = self.apply_coords(boxes[:, :2])
        return boxes

    def apply_polygons(self, polygons: list[np.ndarray]) -> list[np.ndarray]:
        """Clip each polygon to the crop window; polygons left with no area are dropped."""
        out = []
        for poly in polygons:
            poly = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            clipped = _clip_polygon(poly, self.x0, self.y0, self.x0 + self.w, self.y0 + self.h)
            if len(clipped) >= 3 and _polygon_area(clipped) > 0:
                out.append(self.apply_coords(clipped))
        return out

    def inverse(self) -> Transform:
        if self.orig_w is None or self.orig_h is None:
            raise NotImplementedError("CropTransform.inverse needs orig_w and orig_h")
        pad_x1 = self.orig_w - self.x0 - self.w
        pad_y1 = self.orig_h - self.y0 - self.h
        return PadTransform(self.x0, self.y0, pad_x1, pad_y1, orig_w=self.w, orig_h=self.h)


class PadTransform(Transform):
    """Pad ``x0``/``y0`` pixels before and ``x1``/``y1`` pixels after the image.

    ``orig_w``/``orig_h`` (the input size) are only needed for :meth:`inverse`.
    """

    def __init__(
        self,
        x0: int,
        y0: int,
        x1: int,
        y1: int,
        orig_w: int | None = None,
        orig_h: int | None = None,
        pad_value: float = 0,
        seg_pad_value: int = 0,
    ):
        super().__init__()
        self._set_attributes(locals())

    def _pad(self, img: np.ndarray, value: float) -> np.ndarray:
        pad = [(self.y0, self.y1), (self.x0, self.x1)] + [(0, 0)] * (img.ndim - 2)
        return np.pad(img, pad, mode="constant", constant_values=value)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._pad(img, self.pad_value)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._pad(segmentation, self.seg_pad_value)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.array(coords, dtype=np.float64 if coords.dtype.kind != "f" else coords.dtype)
        coords[:, 0] += self.x0
        coords[:, 1] += self.y0
        return coords

    def apply_rotated_box(self, rotated_boxes: np.ndarray) -> np.ndarray:
        """Shift the centres of ``ndarray[N, 5]`` rotated boxes."""
        boxes = np.array(rotated_boxes, dtype=np.float64)
        boxes[:, :2] = self.apply_coords(boxes[:, :2])
        return boxes

    def inverse(self) -> Transform:
        if self.orig_w is None or self.orig_h is None:
            raise NotImplementedError("PadTransform.inverse needs orig_w and orig_h")
        new_w = self.orig_w + self.x0 + self.x1
        new_h = self.orig_h + self.y0 + self.y1
        return CropTransform(self.x0, self.y0, self.orig_w, self.orig_h, new_w, new_h)


class BlendTransform(Transform):
    """``src_weight * src_image + dst_weight * image``; geometry is unchanged.

    ``src_image`` broadcasts against the image (a scalar, a per-channel vector, or an image).
    uint8 images are blended in float and clipped back to [0, 255].
    """

    def __init__(self, src_image: np.ndarray | float, src_weight: float, dst_weight: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype == np.uint8:
            out = self.src_weight * self.src_image + self.dst_weight * img.astype(np.float32)
            return np.clip(out, 0, 255).astype(np.uint8)
        return self.src_weight * self.src_image + self.dst_weight * img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        # Blending is lossy (clipping); like Detectron2, the inverse leaves data alone.
        return NoOpTransform()

"""Detectron2's own transforms: resize, extent, rotation and colour ops.

Shape shorthand: image ``ndarray[H, W(, C)]``; coords ``ndarray[N, 2]`` (x, y) in absolute pixels;
rotated boxes ``ndarray[N, 5]`` (cx, cy, w, h, angle in degrees, counter-clockwise).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .base import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [
    "BlendTransform",
    "ColorTransform",
    "CropTransform",
    "ExtentTransform",
    "GridSampleTransform",
    "HFlipTransform",
    "NoOpTransform",
    "PILColorTransform",
    "PadTransform",
    "ResizeTransform",
    "RotationTransform",
    "ScaleTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
]

# PIL resample filter -> F.interpolate mode, for images PIL cannot resize (not uint8).
_PIL_TO_TORCH_MODE = {
    Image.NEAREST: "nearest",
    Image.BILINEAR: "bilinear",
    Image.BICUBIC: "bicubic",
}


def _to_pil(img: np.ndarray) -> Image.Image:
    if img.ndim == 3 and img.shape[2] == 1:
        return Image.fromarray(img[:, :, 0], mode="L")
    return Image.fromarray(img)


def _from_pil(pil: Image.Image, like: np.ndarray) -> np.ndarray:
    out = np.asarray(pil)
    if like.ndim == 3 and like.shape[2] == 1:
        out = out[:, :, None]
    return out


class ExtentTransform(Transform):
    """Crop (possibly beyond the image) the rectangle ``src_rect`` and resize it to ``output_size``.

    Args:
        src_rect: (x0, y0, x1, y1) in the input image.
        output_size: (h, w) of the output.
        interp: PIL resample filter.
        fill: value for pixels outside the input image.
    """

    def __init__(
        self,
        src_rect: tuple[float, float, float, float],
        output_size: tuple[int, int],
        interp: int = Image.BILINEAR,
        fill: float = 0,
    ):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: int | None = None) -> np.ndarray:
        h, w = self.output_size
        pil = _to_pil(img).transform(
            size=(w, h),
            method=Image.EXTENT,
            data=tuple(float(v) for v in self.src_rect),
            resample=interp if interp is not None else self.interp,
            fill=self.fill,
        )
        return _from_pil(pil, img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        h, w = self.output_size
        x0, y0, x1, y1 = self.src_rect
        out = np.asarray(coords, dtype=np.float32).copy()
        out[:, 0] = (out[:, 0] - 0.5 * (x0 + x1)) * (w / (x1 - x0)) + 0.5 * w
        out[:, 1] = (out[:, 1] - 0.5 * (y0 + y1)) * (h / (y1 - y0)) + 0.5 * h
        return out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=Image.NEAREST)


class ResizeTransform(Transform):
    """Resize an ``h x w`` image to ``new_h x new_w``.

    uint8 images go through PIL's ``resize`` (as in Detectron2, so resized pixels match its
    models' inputs exactly); other dtypes through ``F.interpolate`` with the matching mode.
    Segmentation maps use nearest neighbour.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int | None = None):
        super().__init__()
        if interp is None:
            interp = Image.BILINEAR
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: int | None = None) -> np.ndarray:
        if tuple(img.shape[:2]) != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform expects an image of size (h, w) = {(self.h, self.w)}, "
                f"got shape {tuple(img.shape)}"
            )
        if img.ndim > 4:
            raise ValueError(f"ResizeTransform takes at most 4-d images, got {img.ndim}-d")
        method = interp if interp is not None else self.interp
        if img.dtype == np.uint8:
            if img.ndim == 3 and img.strides[2] < 0 and img[:, :, ::-1].flags.c_contiguous:
                # A channel-reversed view (BGR from an RGB decode): resize the contiguous RGB
                # buffer and reverse again. Each channel is resized alone, so the pixels are
                # identical, and PIL is spared a full copy of the non-contiguous view.
                rgb = img[:, :, ::-1]
                return _from_pil(_to_pil(rgb).resize((self.new_w, self.new_h), method), rgb)[
                    :, :, ::-1
                ]
            pil = _to_pil(img).resize((self.new_w, self.new_h), method)
            return _from_pil(pil, img)
        # Float (or other) images: PIL only handles uint8 for multi-channel data.
        if method not in _PIL_TO_TORCH_MODE:
            raise ValueError(f"ResizeTransform cannot resize a {img.dtype} image with {method}")
        mode = _PIL_TO_TORCH_MODE[method]
        if mode == "nearest" and not np.issubdtype(img.dtype, np.floating):
            # F.interpolate has no integer kernels: pick source pixels by index, with its rule
            # (source index = floor(output index * in / out)).
            rows = np.minimum(
                (np.arange(self.new_h) * (self.h / self.new_h)).astype(int), self.h - 1
            )
            cols = np.minimum(
                (np.arange(self.new_w) * (self.w / self.new_w)).astype(int), self.w - 1
            )
            return img[rows[:, None], cols[None, :]]
        t = torch.from_numpy(np.ascontiguousarray(img))
        shape = list(t.shape)
        shape_4d = shape[:2] + [1] * (4 - len(shape)) + shape[2:]
        t = t.view(shape_4d).permute(2, 3, 0, 1)  # (H, W, 1, C) -> (1, C, H, W)
        align = None if mode == "nearest" else False
        t = F.interpolate(t, (self.new_h, self.new_w), mode=mode, align_corners=align)
        shape[:2] = [self.new_h, self.new_w]
        return t.permute(2, 3, 0, 1).reshape(shape).numpy()

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = np.array(coords, dtype=np.float64 if coords.dtype.kind != "f" else coords.dtype)
        out[:, 0] = out[:, 0] * (self.new_w * 1.0 / self.w)
        out[:, 1] = out[:, 1] * (self.new_h * 1.0 / self.h)
        return out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=Image.NEAREST)

    def apply_rotated_box(self, rotated_boxes: np.ndarray) -> np.ndarray:
        """Scale ``ndarray[N, 5]`` rotated boxes: an anisotropic scale also changes the angle."""
        sx = self.new_w * 1.0 / self.w
        sy = self.new_h * 1.0 / self.h
        boxes = np.array(rotated_boxes, dtype=np.float64)
        theta = np.deg2rad(boxes[:, 4])
        c, s = np.cos(theta), np.sin(theta)
        boxes[:, 0] *= sx
        boxes[:, 1] *= sy
        boxes[:, 2] *= np.sqrt(np.square(sx * c) + np.square(sy * s))
        boxes[:, 3] *= np.sqrt(np.square(sx * s) + np.square(sy * c))
        boxes[:, 4] = np.rad2deg(np.arctan2(sx * s, sy * c))
        return boxes

    def inverse(self) -> Transform:
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class RotationTransform(Transform):
    """Rotate an ``h x w`` image by ``angle`` degrees counter-clockwise around ``center``.

    Args:
        h, w: input size.
        angle: degrees, counter-clockwise.
        expand: grow the output to hold the whole rotated image (otherwise keep ``h x w``).
        center: (x, y) rotation centre in pixels; default the image centre. Ignored by the
            output placement when ``expand`` is set.
        interp: cv2 interpolation flag, default ``cv2.INTER_LINEAR``.
    """

    def __init__(
        self,
        h: int,
        w: int,
        angle: float,
        expand: bool = True,
        center: tuple[float, float] | None = None,
        interp: int | None = None,
    ):
        super().__init__()
        image_center = np.array((w / 2, h / 2))
        if center is None:
            center = image_center
        if interp is None:
            interp = cv2.INTER_LINEAR
        abs_cos = abs(np.cos(np.deg2rad(angle)))
        abs_sin = abs(np.sin(np.deg2rad(angle)))
        if expand:
            bound_w, bound_h = np.rint(
                [h * abs_sin + w * abs_cos, h * abs_cos + w * abs_sin]
            ).astype(int)
        else:
            bound_w, bound_h = w, h
        self._set_attributes(locals())
        self.bound_w, self.bound_h = int(bound_w), int(bound_h)
        self.rm_coords = self.create_rotation_matrix()
        # Pixel centres sit at +0.5: the image warp is offset by half a pixel.
        self.rm_image = self.create_rotation_matrix(offset=-0.5)

    def apply_image(self, img: np.ndarray, interp: int | None = None) -> np.ndarray:
        if len(img) == 0 or self.angle % 360 == 0:
            return img
        if tuple(img.shape[:2]) != (self.h, self.w):
            raise ValueError(
                f"RotationTransform expects an image of size {(self.h, self.w)}, "
                f"got {tuple(img.shape)}"
            )
        flags = interp if interp is not None else self.interp
        return cv2.warpAffine(img, self.rm_image, (self.bound_w, self.bound_h), flags=flags)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=float)
        if len(coords) == 0 or self.angle % 360 == 0:
            return coords
        return cv2.transform(coords[:, None, :], self.rm_coords)[:, 0, :]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp=cv2.INTER_NEAREST)

    def apply_rotated_box(self, rotated_boxes: np.ndarray) -> np.ndarray:
        """Rotate the centres of ``ndarray[N, 5]`` rotated boxes and add the angle."""
        boxes = np.array(rotated_boxes, dtype=np.float64)
        if len(boxes) == 0 or self.angle % 360 == 0:
            return boxes
        boxes[:, :2] = self.apply_coords(boxes[:, :2])
        boxes[:, 4] += self.angle
        return boxes

    def create_rotation_matrix(self, offset: float = 0) -> np.ndarray:
        """The 2x3 affine matrix mapping input to output coordinates."""
        center = (float(self.center[0]) + offset, float(self.center[1]) + offset)
        rm = cv2.getRotationMatrix2D(center, self.angle, 1)
        if self.expand:
            # Move the rotated image centre to the centre of the enlarged canvas.
            rot_im_center = cv2.transform(self.image_center[None, None, :] + offset, rm)[0, 0, :]
            new_center = np.array([self.bound_w / 2, self.bound_h / 2]) + offset - rot_im_center
            rm[:, 2] += new_center
        return rm

    def inverse(self) -> Transform:
        if not self.expand:
            raise NotImplementedError("RotationTransform.inverse needs expand=True")
        rotation = RotationTransform(
            self.bound_h, self.bound_w, -self.angle, True, None, self.interp
        )
        crop = CropTransform(
            (rotation.bound_w - self.w) // 2, (rotation.bound_h - self.h) // 2, self.w, self.h
        )
        return TransformList([rotation, crop])


def _to_nchw_float(img: np.ndarray) -> torch.Tensor:
    """(H, W), (H, W, C) or (N, H, W, C) array -> float (N, C, H, W) tensor."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float()
    if t.ndim == 2:
        return t[None, None]
    if t.ndim == 3:
        return t.permute(2, 0, 1)[None]
    return t.permute(0, 3, 1, 2)


def _from_nchw_float(t: torch.Tensor, like: np.ndarray) -> np.ndarray:
    if like.ndim == 2:
        t = t[0, 0]
    elif like.ndim == 3:
        t = t[0].permute(1, 2, 0)
    else:
        t = t.permute(0, 2, 3, 1)
    if like.dtype == np.uint8:
        t = t.round().clamp(0, 255).byte()
    return np.ascontiguousarray(t.numpy()).astype(like.dtype, copy=False)


class ScaleTransform(Transform):
    """Resize an ``h x w`` image to ``new_h x new_w`` with ``F.interpolate`` (fvcore's op).

    Unlike :class:`ResizeTransform`, every dtype goes through torch; ``interp`` is a torch
    mode name ("nearest", "bilinear", "bicubic", "area"). Images may also be (N, H, W, C).
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: str = "bilinear"):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: str | None = None) -> np.ndarray:
        h, w = img.shape[1:3] if img.ndim == 4 else img.shape[:2]
        if (h, w) != (self.h, self.w):
            raise ValueError(
                f"ScaleTransform expects an image of size {(self.h, self.w)}, got {img.shape}"
            )
        mode = interp if interp is not None else self.interp
        align = False if mode in ("linear", "bilinear", "bicubic") else None
        out = F.interpolate(
            _to_nchw_float(img), size=(self.new_h, self.new_w), mode=mode, align_corners=align
        )
        return _from_nchw_float(out, img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = np.array(coords, dtype=np.float64 if coords.dtype.kind != "f" else coords.dtype)
        out[:, 0] = out[:, 0] * (self.new_w * 1.0 / self.w)
        out[:, 1] = out[:, 1] * (self.new_h * 1.0 / self.h)
        return out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp="nearest")

    def inverse(self) -> Transform:
        return ScaleTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class GridSampleTransform(Transform):
    """Resample the image at ``grid`` (fvcore's op; coordinates are not transformable).

    Args:
        grid (ndarray[N, H_out, W_out, 2]): sampling locations in [-1, 1] (x, y), as for
            ``F.grid_sample`` with ``align_corners=False`` and border padding.
        interp: "nearest" or "bilinear".
    """

    def __init__(self, grid: np.ndarray, interp: str):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray, interp: str | None = None) -> np.ndarray:
        out = F.grid_sample(
            _to_nchw_float(img),
            torch.from_numpy(np.asarray(self.grid, dtype=np.float32)),
            mode=interp if interp is not None else self.interp,
            padding_mode="border",
            align_corners=False,
        )
        return _from_nchw_float(out, img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        raise NotImplementedError("GridSampleTransform cannot transform coordinates")

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation, interp="nearest")


class ColorTransform(Transform):
    """Apply ``op(image) -> image`` to the pixels only; geometry is unchanged."""

    def __init__(self, op: Callable[[np.ndarray], np.ndarray]):
        if not callable(op):
            raise TypeError(f"ColorTransform needs a callable op, got {type(op)}")
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.op(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()


class PILColorTransform(ColorTransform):
    """Apply ``op(PIL.Image) -> PIL.Image`` to the pixels (e.g. ``ImageEnhance`` ops)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.asarray(self.op(Image.fromarray(img)))


def _rotated_box_noop(transform: Transform, rotated_boxes: np.ndarray) -> np.ndarray:
    return rotated_boxes


NoOpTransform.register_type("rotated_box", _rotated_box_noop)

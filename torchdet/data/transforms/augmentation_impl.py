"""The standard augmentations of Detectron2 (resize, flip, crop, rotate, colour jitter)."""

from __future__ import annotations

import sys
from numbers import Number

import numpy as np
from PIL import Image

from .augmentation import Augmentation, _transform_to_aug
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
from .transform import ExtentTransform, ResizeTransform, RotationTransform

__all__ = [
    "FixedSizeCrop",
    "MinIoURandomCrop",
    "RandomApply",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomExtent",
    "RandomFlip",
    "RandomLighting",
    "RandomResize",
    "RandomRotation",
    "RandomSaturation",
    "Resize",
    "ResizeScale",
    "ResizeShortestEdge",
]


class RandomApply(Augmentation):
    """Apply a transform or augmentation with probability ``prob``."""

    def __init__(self, tfm_or_aug: Augmentation | Transform, prob: float = 0.5):
        super().__init__()
        self.aug = _transform_to_aug(tfm_or_aug)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomApply: prob must be in [0, 1], got {prob}")
        self.prob = prob

    def get_transform(self, *args):
        if self._rand_range() < self.prob:
            return self.aug.get_transform(*args)
        return NoOpTransform()

    def __call__(self, aug_input):
        if self._rand_range() < self.prob:
            return self.aug(aug_input)
        return NoOpTransform()


class RandomFlip(Augmentation):
    """Flip the image horizontally or vertically with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False):
        super().__init__()
        if horizontal and vertical:
            raise ValueError("RandomFlip: cannot flip both horizontally and vertically")
        if not horizontal and not vertical:
            raise ValueError("RandomFlip: set horizontal or vertical")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        if self._rand_range() < self.prob:
            return HFlipTransform(w) if self.horizontal else VFlipTransform(h)
        return NoOpTransform()


class Resize(Augmentation):
    """Resize to a fixed ``(h, w)`` (an int means a square)."""

    def __init__(self, shape: int | tuple[int, int], interp: int = Image.BILINEAR):
        super().__init__()
        if isinstance(shape, int):
            shape = (shape, shape)
        shape = tuple(shape)
        self._init(locals())

    def get_transform(self, image):
        return ResizeTransform(
            image.shape[0], image.shape[1], self.shape[0], self.shape[1], self.interp
        )


class ResizeShortestEdge(Augmentation):
    """Resize the shorter side to a sampled length, capping the longer side at ``max_size``.

    Args:
        short_edge_length: with ``sample_style="range"`` a ``(min, max)`` pair sampled uniformly
            (integers, inclusive); with ``"choice"`` a list to choose from. An int means one size.
        max_size: upper bound of the longer side.
        sample_style: "range" or "choice".
        interp: PIL resample filter.
    """

    def __init__(
        self,
        short_edge_length: int | tuple[int, ...] | list[int],
        max_size: int = sys.maxsize,
        sample_style: str = "range",
        interp: int = Image.BILINEAR,
    ):
        super().__init__()
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        self.is_range = sample_style == "range"
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        if self.is_range and len(short_edge_length) != 2:
            raise ValueError(
                "short_edge_length must be two values (min, max) with sample_style='range', "
                f"got {short_edge_length}"
            )
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        if self.is_range:
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = np.random.choice(self.short_edge_length)
        if size == 0:
            return NoOpTransform()
        newh, neww = ResizeShortestEdge.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, newh, neww, self.interp)

    @staticmethod
    def get_output_shape(
        oldh: int, oldw: int, short_edge_length: int, max_size: int
    ) -> tuple[int, int]:
        """Output ``(h, w)`` for a shorter side of ``short_edge_length`` and a cap of ``max_size``.

        Rounds exactly as Detectron2 does (``int(x + 0.5)`` after the scale), which decides the
        network input size and therefore the test-time outputs.
        """
        size = short_edge_length * 1.0
        scale = size / min(oldh, oldw)
        if oldh < oldw:
            newh, neww = size, scale * oldw
        else:
            newh, neww = scale * oldh, size
        if max(newh, neww) > max_size:
            scale = max_size * 1.0 / max(newh, neww)
            newh = newh * scale
            neww = neww * scale
        return int(newh + 0.5), int(neww + 0.5)


class ResizeScale(Augmentation):
    """Scale-jitter resize: fit the image into ``scale * (target_height, target_width)``."""

    def __init__(
        self,
        min_scale: float,
        max_scale: float,
        target_height: int,
        target_width: int,
        interp: int = Image.BILINEAR,
    ):
        super().__init__()
        self._init(locals())

    def _get_resize(self, image: np.ndarray, scale: float) -> Transform:
        input_size = image.shape[:2]
        target_scaled = np.multiply((self.target_height, self.target_width), scale)
        output_scale = np.minimum(
            target_scaled[0] / input_size[0], target_scaled[1] / input_size[1]
        )
        output_size = np.round(np.multiply(input_size, output_scale)).astype(int)
        return ResizeTransform(
            input_size[0], input_size[1], int(output_size[0]), int(output_size[1]), self.interp
        )

    def get_transform(self, image):
        return self._get_resize(image, np.random.uniform(self.min_scale, self.max_scale))


class RandomRotation(Augmentation):
    """Rotate by a random angle (degrees, counter-clockwise).

    Args:
        angle: ``[min, max]`` with ``sample_style="range"``, a list of choices otherwise.
        expand: enlarge the canvas to hold the whole rotated image.
        center: relative centre; ``[[minx, miny], [maxx, maxy]]`` for "range", a list of
            ``(x, y)`` for "choice"; ``None`` is the image centre.
        sample_style: "range" or "choice".
        interp: cv2 interpolation flag.
    """

    def __init__(self, angle, expand=True, center=None, sample_style="range", interp=None):
        super().__init__()
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        self.is_range = sample_style == "range"
        if isinstance(angle, Number):
            angle = (angle, angle)
        if center is not None and isinstance(center[0], Number):
            center = (center, center)
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        center = None
        if self.is_range:
            angle = np.random.uniform(self.angle[0], self.angle[1])
            if self.center is not None:
                center = (
                    np.random.uniform(self.center[0][0], self.center[1][0]),
                    np.random.uniform(self.center[0][1], self.center[1][1]),
                )
        else:
            angle = np.random.choice(self.angle)
            if self.center is not None:
                center = self.center[np.random.randint(len(self.center))]
        if center is not None:
            center = (w * center[0], h * center[1])
        if angle % 360 == 0:
            return NoOpTransform()
        return RotationTransform(h, w, angle, expand=self.expand, center=center, interp=self.interp)


class FixedSizeCrop(Augmentation):
    """Crop a random ``crop_size`` window if the image is larger; pad up to it if ``pad``."""

    def __init__(
        self,
        crop_size: tuple[int, int],
        pad: bool = True,
        pad_value: float = 128.0,
        seg_pad_value: int = 255,
    ):
        super().__init__()
        self._init(locals())

    def _get_crop(self, image: np.ndarray) -> Transform:
        input_size = image.shape[:2]
        max_offset = np.maximum(np.subtract(input_size, self.crop_size), 0)
        offset = np.round(np.multiply(max_offset, np.random.uniform(0.0, 1.0))).astype(int)
        return CropTransform(
            int(offset[1]),
            int(offset[0]),
            int(self.crop_size[1]),
            int(self.crop_size[0]),
            input_size[1],
            input_size[0],
        )

    def _get_pad(self, image: np.ndarray) -> Transform:
        input_size = image.shape[:2]
        pad_size = np.maximum(np.subtract(self.crop_size, input_size), 0)
        original_size = np.minimum(input_size, self.crop_size)
        return PadTransform(
            0,
            0,
            int(pad_size[1]),
            int(pad_size[0]),
            int(original_size[1]),
            int(original_size[0]),
            self.pad_value,
            self.seg_pad_value,
        )

    def get_transform(self, image):
        transforms = [self._get_crop(image)]
        if self.pad:
            transforms.append(self._get_pad(image))
        return TransformList(transforms)


class RandomCrop(Augmentation):
    """Crop a random window of a size given by ``crop_type``:

    - "relative": ``(h * crop_size[0], w * crop_size[1])``
    - "relative_range": uniform in ``[crop_size, 1]`` times the input size
    - "absolute": ``crop_size`` pixels (clipped to the input)
    - "absolute_range": each side uniform in ``[crop_size[0], crop_size[1]]`` pixels
    """

    _TYPES = ("relative_range", "relative", "absolute", "absolute_range")

    def __init__(self, crop_type: str, crop_size):
        super().__init__()
        if crop_type not in self._TYPES:
            raise ValueError(f"crop_type must be one of {self._TYPES}, got {crop_type!r}")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        croph, cropw = self.get_crop_size((h, w))
        if h < croph or w < cropw:
            raise ValueError(f"crop size {(croph, cropw)} exceeds the image size {(h, w)}")
        h0 = np.random.randint(h - croph + 1)
        w0 = np.random.randint(w - cropw + 1)
        return CropTransform(w0, h0, cropw, croph)

    def get_crop_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The ``(h, w)`` of the crop for an input of ``image_size`` (may be random)."""
        h, w = image_size
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            crop_size = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = crop_size + np.random.rand(2) * (1 - crop_size)
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "absolute":
            return min(self.crop_size[0], h), min(self.crop_size[1], w)
        # absolute_range
        if self.crop_size[0] > self.crop_size[1]:
            raise ValueError(f"absolute_range crop_size must be (min, max), got {self.crop_size}")
        ch = np.random.randint(min(h, self.crop_size[0]), min(h, self.crop_size[1]) + 1)
        cw = np.random.randint(min(w, self.crop_size[0]), min(w, self.crop_size[1]) + 1)
        return int(ch), int(cw)


class RandomCrop_CategoryAreaConstraint(Augmentation):  # noqa: N801 (Detectron2's name)
    """``RandomCrop`` that retries (up to 10 times) while one category covers more than
    ``single_category_max_area`` of the crop in the semantic segmentation."""

    input_args = ("image", "sem_seg")

    def __init__(
        self,
        crop_type: str,
        crop_size,
        single_category_max_area: float = 1.0,
        ignored_category: int | None = None,
    ):
        super().__init__()
        self.crop_aug = RandomCrop(crop_type, crop_size)
        self._init(locals())

    def get_transform(self, image, sem_seg):
        if self.single_category_max_area >= 1.0:
            return self.crop_aug.get_transform(image)
        h, w = sem_seg.shape
        for _ in range(10):
            crop_size = self.crop_aug.get_crop_size((h, w))
            y0 = np.random.randint(h - crop_size[0] + 1)
            x0 = np.random.randint(w - crop_size[1] + 1)
            window = sem_seg[y0 : y0 + crop_size[0], x0 : x0 + crop_size[1]]
            labels, cnt = np.unique(window, return_counts=True)
            if self.ignored_category is not None:
                cnt = cnt[labels != self.ignored_category]
            if len(cnt) > 1 and np.max(cnt) < np.sum(cnt) * self.single_category_max_area:
                break
        return CropTransform(x0, y0, crop_size[1], crop_size[0])


class RandomExtent(Augmentation):
    """Take a randomly scaled and shifted window (may extend past the image, filled with 0).

    Args:
        scale_range: (low, high) scale of the window relative to the image.
        shift_range: (x, y) maximum shift as a fraction of the image size.
    """

    def __init__(self, scale_range: tuple[float, float], shift_range: tuple[float, float]):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        img_h, img_w = image.shape[:2]
        src_rect = np.array([-0.5 * img_w, -0.5 * img_h, 0.5 * img_w, 0.5 * img_h])
        src_rect *= np.random.uniform(self.scale_range[0], self.scale_range[1])
        src_rect[0::2] += self.shift_range[0] * img_w * (np.random.rand() - 0.5)
        src_rect[1::2] += self.shift_range[1] * img_h * (np.random.rand() - 0.5)
        src_rect[0::2] += 0.5 * img_w
        src_rect[1::2] += 0.5 * img_h
        return ExtentTransform(
            src_rect=tuple(float(v) for v in src_rect),
            output_size=(int(src_rect[3] - src_rect[1]), int(src_rect[2] - src_rect[0])),
        )


class RandomContrast(Augmentation):
    """Blend with the image mean: ``w * image + (1 - w) * mean``, ``w`` uniform in range."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=image.mean(), src_weight=1 - w, dst_weight=w)


class RandomBrightness(Augmentation):
    """Scale intensities: ``w * image``, ``w`` uniform in range."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(src_image=0, src_weight=1 - w, dst_weight=w)


class RandomSaturation(Augmentation):
    """Blend with the grayscale image (RGB input): ``w * image + (1 - w) * gray``."""

    def __init__(self, intensity_min: float, intensity_max: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"RandomSaturation needs an RGB image (H, W, 3), got {image.shape}")
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        grayscale = image.dot([0.299, 0.587, 0.114])[:, :, np.newaxis]
        return BlendTransform(src_image=grayscale, src_weight=1 - w, dst_weight=w)


class RandomLighting(Augmentation):
    """AlexNet-style PCA lighting noise with ImageNet eigenvectors (RGB, 0-255 input)."""

    def __init__(self, scale: float):
        super().__init__()
        self._init(locals())
        self.eigen_vecs = np.array(
            [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
        )
        self.eigen_vals = np.array([0.2175, 0.0188, 0.0045])

    def get_transform(self, image):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"RandomLighting needs an RGB image (H, W, 3), got {image.shape}")
        weights = np.random.normal(scale=self.scale, size=3)
        return BlendTransform(
            src_image=self.eigen_vecs.dot(weights * self.eigen_vals), src_weight=1.0, dst_weight=1.0
        )


class RandomResize(Augmentation):
    """Resize to one ``(h, w)`` drawn from ``shape_list``."""

    def __init__(self, shape_list: list[tuple[int, int]], interp: int = Image.BILINEAR):
        super().__init__()
        if len(shape_list) == 0:
            raise ValueError("RandomResize: shape_list is empty")
        self._init(locals())

    def get_transform(self, image):
        h, w = self.shape_list[np.random.randint(len(self.shape_list))]
        return ResizeTransform(image.shape[0], image.shape[1], int(h), int(w), self.interp)


def _iou_one_to_many(patch: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one XYXY box ``(4,)`` with ``boxes (N, 4)``."""
    lt = np.maximum(patch[:2], boxes[:, :2])
    rb = np.minimum(patch[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area_p = (patch[2] - patch[0]) * (patch[3] - patch[1])
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area_p + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class MinIoURandomCrop(Augmentation):
    """SSD-style crop: a random window whose IoU with every box is at least a sampled minimum,
    and which contains at least one box centre.

    Args:
        min_ious: candidate minimum IoUs (1 = no crop and 0 = any window are added).
        min_crop_size: minimum crop side as a fraction of the image side.
        mode_trials, crop_trials: numbers of attempts.
    """

    input_args = ("image", "boxes")

    def __init__(
        self,
        min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size: float = 0.3,
        mode_trials: int = 1000,
        crop_trials: int = 50,
    ):
        super().__init__()
        self._init(locals())
        self.sample_mode = (1, *min_ious, 0)

    def get_transform(self, image, boxes):
        if boxes is None:
            return NoOpTransform()
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        h, w = image.shape[:2]
        for _ in range(self.mode_trials):
            mode = self.sample_mode[np.random.randint(len(self.sample_mode))]
            if mode == 1:
                return NoOpTransform()
            for _ in range(self.crop_trials):
                new_w = np.random.uniform(self.min_crop_size * w, w)
                new_h = np.random.uniform(self.min_crop_size * h, h)
                if new_h / new_w < 0.5 or new_h / new_w > 2:
                    continue
                left = np.random.uniform(0, w - new_w)
                top = np.random.uniform(0, h - new_h)
                patch = np.array(
                    (int(left), int(top), int(left + new_w), int(top + new_h)), dtype=np.float64
                )
                if patch[2] == patch[0] or patch[3] == patch[1]:
                    continue
                if len(boxes):
                    if _iou_one_to_many(patch, boxes).min() < mode:
                        continue
                    center = (boxes[:, :2] + boxes[:, 2:]) / 2
                    inside = (
                        (center[:, 0] > patch[0])
                        & (center[:, 1] > patch[1])
                        & (center[:, 0] < patch[2])
                        & (center[:, 1] < patch[3])
                    )
                    if not inside.any():
                        continue
                return CropTransform(int(left), int(top), int(new_w), int(new_h))
        return NoOpTransform()

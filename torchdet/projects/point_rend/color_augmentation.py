"""SSD-style photometric augmentation used by PointRend's semantic segmentation configs."""

from __future__ import annotations

import random

import cv2
import numpy as np

from torchdet.data.transforms import NoOpTransform, Transform

__all__ = ["ColorAugSSDTransform"]


class ColorAugSSDTransform(Transform):
    """Random brightness, contrast, saturation and hue jitter (SSD's ``PhotometricDistort``);
    each distortion is applied with probability 1/2, contrast before or after the HSV ones.

    Geometry is unchanged: coordinates and segmentation maps pass through.

    Args:
        img_format: "BGR" or "RGB" (the channel order of the images given to ``apply_image``).
        brightness_delta: maximum added intensity.
        contrast_low, contrast_high: range of the contrast factor.
        saturation_low, saturation_high: range of the saturation factor.
        hue_delta: maximum hue shift (OpenCV hue units, 0-180).
    """

    def __init__(
        self,
        img_format: str,
        brightness_delta: int = 32,
        contrast_low: float = 0.5,
        contrast_high: float = 1.5,
        saturation_low: float = 0.5,
        saturation_high: float = 1.5,
        hue_delta: int = 18,
    ):
        super().__init__()
        if img_format not in ("BGR", "RGB"):
            raise ValueError(
                f"ColorAugSSDTransform: img_format must be BGR or RGB, got {img_format!r}"
            )
        self.is_rgb = img_format == "RGB"
        self._set_attributes(locals())

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()

    def apply_image(self, img: np.ndarray, interp=None) -> np.ndarray:
        """Args: img (ndarray[H, W, 3] uint8 or float in 0-255). Returns the same dtype."""
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"ColorAugSSDTransform needs an (H, W, 3) image, got {img.shape}")
        dtype = img.dtype
        if self.is_rgb:
            img = img[:, :, ::-1]
        img = self.brightness(img)
        if random.randrange(2):
            img = self.contrast(img)
            img = self.saturation(img)
            img = self.hue(img)
        else:
            img = self.saturation(img)
            img = self.hue(img)
            img = self.contrast(img)
        if self.is_rgb:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img).astype(dtype)

    @staticmethod
    def convert(img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
        img = img.astype(np.float32) * alpha + beta
        return np.clip(img, 0, 255).astype(np.uint8)

    def brightness(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            return self.convert(
                img, beta=random.uniform(-self.brightness_delta, self.brightness_delta)
            )
        return img

    def contrast(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            return self.convert(img, alpha=random.uniform(self.contrast_low, self.contrast_high))
        return img

    def saturation(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            img = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.uint8), cv2.COLOR_BGR2HSV)
            img[:, :, 1] = self.convert(
                img[:, :, 1], alpha=random.uniform(self.saturation_low, self.saturation_high)
            )
            return cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        return img

    def hue(self, img: np.ndarray) -> np.ndarray:
        if random.randrange(2):
            img = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.uint8), cv2.COLOR_BGR2HSV)
            shift = random.randint(-self.hue_delta, self.hue_delta)
            img[:, :, 0] = (img[:, :, 0].astype(int) + shift) % 180
            return cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        return img

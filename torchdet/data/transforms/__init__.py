"""Transforms (deterministic) and augmentations (random policies producing transforms)."""

from .augmentation import (
    AugInput,
    Augmentation,
    AugmentationList,
    StandardAugInput,
    TransformGen,
    apply_augmentations,
    apply_transform_gens,
)
from .augmentation_impl import (
    FixedSizeCrop,
    MinIoURandomCrop,
    RandomApply,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomCrop_CategoryAreaConstraint,
    RandomExtent,
    RandomFlip,
    RandomLighting,
    RandomResize,
    RandomRotation,
    RandomSaturation,
    Resize,
    ResizeScale,
    ResizeShortestEdge,
)
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
from .transform import (
    ColorTransform,
    ExtentTransform,
    GridSampleTransform,
    PILColorTransform,
    ResizeTransform,
    RotationTransform,
    ScaleTransform,
)

__all__ = [k for k in globals() if not k.startswith("_")]

"""Augmentations: policies that look at the inputs and return a deterministic ``Transform``.

An ``Augmentation`` declares the inputs it needs in ``input_args`` (names of ``AugInput``
attributes, default ``("image",)``); ``get_transform(*inputs)`` draws its random parameters and
returns a ``Transform``; ``aug(aug_input)`` also applies that transform in place.
"""

from __future__ import annotations

import inspect
import pprint
from typing import Any

import numpy as np

from .base import Transform, TransformList

__all__ = [
    "AugInput",
    "Augmentation",
    "AugmentationList",
    "StandardAugInput",
    "TransformGen",
    "apply_augmentations",
    "apply_transform_gens",
]


def _check_img_dtype(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"augmentations take numpy images, got {type(img)}")
    if np.issubdtype(img.dtype, np.integer) and img.dtype != np.uint8:
        raise TypeError(f"integer images must be uint8, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C), got shape {img.shape}")


class Augmentation:
    """Base class of augmentations (random policies producing a ``Transform``)."""

    input_args: tuple[str, ...] = ("image",)

    def _init(self, params: dict[str, Any] | None = None) -> None:
        """Store the constructor arguments (``locals()``) as attributes, except ``self``."""
        if params:
            for k, v in params.items():
                if k != "self" and not k.startswith("_"):
                    setattr(self, k, v)

    def get_transform(self, *args: Any) -> Transform:
        """Draw the random parameters from the inputs named in ``input_args``."""
        raise NotImplementedError

    def __call__(self, aug_input: AugInput) -> Transform:
        """Compute the transform from ``aug_input``, apply it in place and return it."""
        args = _get_aug_input_args(self, aug_input)
        tfm = self.get_transform(*args)
        if not isinstance(tfm, Transform | TransformList):
            raise TypeError(
                f"{type(self).__name__}.get_transform must return a Transform, got {type(tfm)}"
            )
        aug_input.transform(tfm)
        return tfm

    def _rand_range(self, low: float = 1.0, high: float | None = None, size=None):
        """Uniform float in ``[low, high)``; with one argument, in ``[0, low)``."""
        if high is None:
            low, high = 0, low
        if size is None:
            size = []
        return np.random.uniform(low, high, size)

    def __repr__(self) -> str:
        try:
            sig = inspect.signature(self.__init__)
        except (TypeError, ValueError):
            return super().__repr__()
        items = []
        for name, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                continue
            value = getattr(self, name)
            if param.default is not param.empty:
                try:
                    if bool(value == param.default):
                        continue
                except Exception:
                    pass
            items.append(f"{name}={pprint.pformat(value)}")
        return f"{type(self).__name__}({', '.join(items)})"

    __str__ = __repr__


def _get_aug_input_args(aug: Augmentation, aug_input: Any) -> list[Any]:
    args = []
    for name in aug.input_args:
        if not hasattr(aug_input, name):
            raise AttributeError(
                f"{type(aug).__name__} needs input {name!r} (its input_args are "
                f"{aug.input_args}), which {type(aug_input).__name__} does not have"
            )
        args.append(getattr(aug_input, name))
    return args


class _TransformToAug(Augmentation):
    """Wrap a fixed ``Transform`` so it can sit in an ``AugmentationList``."""

    def __init__(self, tfm: Transform):
        self.tfm = tfm

    def get_transform(self, *args: Any) -> Transform:
        return self.tfm

    def __repr__(self) -> str:
        return repr(self.tfm)


def _transform_to_aug(x: Augmentation | Transform) -> Augmentation:
    if isinstance(x, Transform | TransformList):
        return _TransformToAug(x)
    if not isinstance(x, Augmentation):
        raise TypeError(f"expected an Augmentation or a Transform, got {type(x)}: {x!r}")
    return x


class AugmentationList(Augmentation):
    """Apply augmentations in sequence; each sees the output of the previous one."""

    def __init__(self, augs: list[Augmentation | Transform]):
        super().__init__()
        self.augs = [_transform_to_aug(x) for x in augs]

    def __call__(self, aug_input: AugInput) -> TransformList:
        return TransformList([aug(aug_input) for aug in self.augs])

    def get_transform(self, *args: Any) -> Transform:
        raise NotImplementedError(
            "AugmentationList applies each augmentation in turn; call it on an AugInput"
        )

    def __repr__(self) -> str:
        return "AugmentationList[{}]".format(", ".join(repr(a) for a in self.augs))

    __str__ = __repr__


class AugInput:
    """The inputs of augmentations: an image and optional boxes and semantic segmentation.

    Args:
        image (ndarray[H, W] or ndarray[H, W, C]): uint8 in [0, 255] or float.
        boxes (ndarray[N, 4], optional): XYXY_ABS boxes.
        sem_seg (ndarray[H, W], optional): integer class map.
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        boxes: np.ndarray | None = None,
        sem_seg: np.ndarray | None = None,
    ):
        _check_img_dtype(image)
        self.image = image
        self.boxes = boxes
        self.sem_seg = sem_seg

    def transform(self, tfm: Transform) -> None:
        """Apply ``tfm`` in place to every attribute that is present."""
        self.image = tfm.apply_image(self.image)
        if self.boxes is not None:
            self.boxes = tfm.apply_box(self.boxes)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)

    def apply_augmentations(self, augmentations: list[Augmentation | Transform]) -> TransformList:
        """Apply the augmentations in place and return the combined transform."""
        return AugmentationList(augmentations)(self)


def apply_augmentations(
    augmentations: list[Augmentation | Transform], inputs: np.ndarray | AugInput
) -> tuple[np.ndarray | AugInput, TransformList]:
    """Apply augmentations to an image (``ndarray``) or an ``AugInput``.

    Returns:
        (the transformed image or the same ``AugInput``, the combined ``TransformList``)
    """
    image_only = isinstance(inputs, np.ndarray)
    if image_only:
        inputs = AugInput(inputs)
    tfms = inputs.apply_augmentations(augmentations)
    return (inputs.image if image_only else inputs), tfms


# Legacy names kept by Detectron2 for compatibility.
TransformGen = Augmentation
StandardAugInput = AugInput
apply_transform_gens = apply_augmentations

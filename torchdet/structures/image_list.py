"""``ImageList``: images of different sizes padded into one batch tensor."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, device
from torch.nn import functional as F

__all__ = ["ImageList"]


class ImageList:
    """A batch of images padded to one size, plus each image's original size.

    Attributes:
        tensor (Tensor[N, ..., H, W]): the padded batch.
        image_sizes (list[tuple[int, int]]): (h, w) of each image before padding; the valid
            region of image i is ``tensor[i, ..., :h, :w]``.
    """

    def __init__(self, tensor: Tensor, image_sizes: list[tuple[int, int]]):
        """
        Args:
            tensor (Tensor[N, ..., H, W]): the padded batch.
            image_sizes (list[(h, w)]): the size of each image, len N.
        """
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> Tensor:
        """The ``idx``-th image without its padding: Tensor[..., h, w]."""
        size = self.image_sizes[idx]
        return self.tensor[idx, ..., : size[0], : size[1]]

    def to(self, *args: Any, **kwargs: Any) -> ImageList:
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> device:
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: list[Tensor],
        size_divisibility: int = 0,
        pad_value: float = 0.0,
        padding_constraints: dict[str, int] | None = None,
    ) -> ImageList:
        """Pad images to a common size and batch them.

        The batch is as large as the largest height and width (or ``square_size`` squared),
        rounded up to a multiple of ``size_divisibility``; images sit in the top-left corner
        and the rest is ``pad_value``.

        Args:
            tensors (list[Tensor[..., H_i, W_i]]): images; all dims but the last two equal.
            size_divisibility (int): if > 1, pad H and W up to a multiple of it (FPN models
                need a multiple of their largest stride).
            pad_value (float): value of the padded pixels.
            padding_constraints (dict, optional): ``{"size_divisibility": int,
                "square_size": int}``; ``size_divisibility`` here overrides the argument,
                ``square_size > 0`` pads every image to ``square_size x square_size`` (which
                must be at least as large as every image).

        Returns:
            ImageList: ``tensor`` of shape (N, ..., H, W), contiguous.
        """
        if not isinstance(tensors, (tuple, list)):
            raise TypeError(
                f"ImageList.from_tensors expects a list of tensors, got {type(tensors).__name__}"
            )
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image, got an empty list")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"ImageList.from_tensors: image {i} is a {type(t).__name__}, not a Tensor"
                )
            if t.dim() < 2:
                raise ValueError(
                    f"ImageList.from_tensors: image {i} has shape {tuple(t.shape)}; images need "
                    "at least 2 dims (..., H, W)"
                )
            if t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(
                    f"ImageList.from_tensors: image {i} has shape {tuple(t.shape)}, image 0 has "
                    f"{tuple(tensors[0].shape)}; all dims but (H, W) (e.g. channels) must match"
                )

        if (torch.jit.is_tracing() or torch.compiler.is_exporting()) and len(tensors) == 1:
            return ImageList._from_traced_tensor(
                tensors[0], size_divisibility, pad_value, padding_constraints
            )
        image_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in tensors]
        max_h = max(h for h, _ in image_sizes)
        max_w = max(w for _, w in image_sizes)
        if padding_constraints is not None:
            square_size = int(padding_constraints.get("square_size", 0))
            if square_size > 0:
                if square_size < max_h or square_size < max_w:
                    raise ValueError(
                        f"ImageList.from_tensors: square_size {square_size} is smaller than the "
                        f"largest image ({max_h} x {max_w})"
                    )
                max_h = max_w = square_size
            if "size_divisibility" in padding_constraints:
                size_divisibility = padding_constraints["size_divisibility"]
        if size_divisibility > 1:
            stride = int(size_divisibility)
            max_h = (max_h + stride - 1) // stride * stride
            max_w = (max_w + stride - 1) // stride * stride

        if len(tensors) == 1:
            h, w = image_sizes[0]
            padding = [0, max_w - w, 0, max_h - h]
            batched = F.pad(tensors[0], padding, value=pad_value).unsqueeze_(0)
        else:
            batch_shape = [len(tensors), *tensors[0].shape[:-2], max_h, max_w]
            batched = tensors[0].new_full(batch_shape, pad_value)
            for i, img in enumerate(tensors):
                batched[i, ..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batched.contiguous(), image_sizes)

    @staticmethod
    def _from_traced_tensor(
        image: Tensor,
        size_divisibility: int,
        pad_value: float,
        padding_constraints: dict[str, int] | None,
    ) -> ImageList:
        """``from_tensors`` of one image while tracing for export: the image size stays a pair of
        traced scalars (not Python ints), so the graph pads inputs of any size correctly."""
        h, w = image.shape[-2], image.shape[-1]
        max_h, max_w = h, w
        constraints = padding_constraints or {}
        square_size = int(constraints.get("square_size", 0))
        size_divisibility = constraints.get("size_divisibility", size_divisibility)
        if square_size > 0:
            max_h = max_w = square_size
        elif size_divisibility > 1:
            stride = int(size_divisibility)
            max_h = (h + (stride - 1)) // stride * stride
            max_w = (w + (stride - 1)) // stride * stride
        batched = F.pad(image, [0, max_w - w, 0, max_h - h], value=pad_value).unsqueeze(0)
        return ImageList(batched.contiguous(), [(h, w)])

"""``ROIPooler``: pool fixed-size features for boxes from the pyramid level matching their size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from torchdet.layers import ROIAlign, ROIAlignRotated, ROIPool, nonzero_tuple, shapes_to_tensor
from torchdet.structures import Boxes

__all__ = [
    "ROIPooler",
    "assign_boxes_to_levels",
    "convert_boxes_to_pooler_format",
]

# Shape shorthand: M boxes over the batch, C channels, L levels, B box dim (4 or 5).


def assign_boxes_to_levels(
    box_lists: list[Boxes],
    min_level: int,
    max_level: int,
    canonical_box_size: float,
    canonical_level: int,
) -> torch.Tensor:
    """The FPN level of every box (Eqn. 1 of the FPN paper), relative to ``min_level``.

    A box of size ``sqrt(area) = canonical_box_size`` goes to ``canonical_level``; twice as
    large one level up, and so on, clamped to ``[min_level, max_level]``.

    Args:
        box_lists (list[Boxes] or list[RotatedBoxes]): the boxes of each image.
        min_level, max_level: the first and last pyramid levels (log2 of their strides).
        canonical_box_size, canonical_level: the reference box size and its level.

    Returns:
        Tensor[M] int64: level index in ``[0, max_level - min_level]`` of each box, in the
        order of the concatenated ``box_lists``.
    """
    box_sizes = torch.sqrt(torch.cat([boxes.area() for boxes in box_lists]))
    # FPN paper, eq. 1; the 1e-8 keeps log2 finite for empty boxes.
    level_assignments = torch.floor(
        canonical_level + torch.log2(box_sizes / canonical_box_size + 1e-8)
    )
    level_assignments = torch.clamp(level_assignments, min=min_level, max=max_level)
    return level_assignments.to(torch.int64) - min_level


def _convert_boxes_to_pooler_format(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Prepend the batch index of each box: ``(M, B)`` + per-image counts -> ``(M, 1 + B)``."""
    sizes = sizes.to(device=boxes.device)
    indices = torch.repeat_interleave(
        torch.arange(len(sizes), dtype=boxes.dtype, device=boxes.device), sizes
    )
    return torch.cat([indices[:, None], boxes], dim=1)


def convert_boxes_to_pooler_format(box_lists: list[Boxes]) -> torch.Tensor:
    """The boxes of all images as one ``Tensor[M, 1 + B]``: batch index, then the box.

    Args:
        box_lists (list[Boxes] or list[RotatedBoxes]): the boxes of each image of the batch.

    Returns:
        Tensor[M, 5] (or ``[M, 6]`` for rotated boxes): column 0 is the image index.
    """
    boxes = torch.cat([x.tensor for x in box_lists], dim=0)
    sizes = shapes_to_tensor([x.__len__() for x in box_lists])  # traced sizes stay dynamic
    return _convert_boxes_to_pooler_format(boxes, sizes)


def _create_zeros(
    batch_target: torch.Tensor | None,
    channels: int,
    height: int,
    width: int,
    like_tensor: torch.Tensor,
) -> torch.Tensor:
    batches = batch_target.shape[0] if batch_target is not None else 0
    return torch.zeros(
        (batches, channels, height, width), dtype=like_tensor.dtype, device=like_tensor.device
    )


_POOLER_TYPES = ("ROIAlign", "ROIAlignV2", "ROIPool", "ROIAlignRotated")


class ROIPooler(nn.Module):
    """Region-of-interest feature pooling over one or several (FPN) feature levels."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str,
        canonical_box_size: float = 224,
        canonical_level: int = 4,
    ):
        """
        Args:
            output_size (int or (int, int)): the pooled size ``(H_o, W_o)``.
            scales (list[float]): ``1 / stride`` of each feature level, finest first; strides
                must be powers of 2 on contiguous levels.
            sampling_ratio (int): sampling points per bin of ROIAlign (0: adaptive).
            pooler_type (str): "ROIAlign" (aligned=False), "ROIAlignV2" (aligned=True),
                "ROIPool" or "ROIAlignRotated".
            canonical_box_size (float): box size (sqrt of area) that maps to
                ``canonical_level`` (224, the ImageNet pre-training size).
            canonical_level (int): the level of canonical boxes (4, i.e. "C4" / P4).
        """
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if len(output_size) != 2 or not all(isinstance(s, int) for s in output_size):
            raise ValueError(f"ROIPooler: output_size must be an int or 2 ints, got {output_size}")
        self.output_size = tuple(output_size)

        if pooler_type == "ROIAlign":
            self.level_poolers = nn.ModuleList(
                ROIAlign(
                    output_size, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=False
                )
                for scale in scales
            )
        elif pooler_type == "ROIAlignV2":
            self.level_poolers = nn.ModuleList(
                ROIAlign(
                    output_size, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=True
                )
                for scale in scales
            )
        elif pooler_type == "ROIPool":
            self.level_poolers = nn.ModuleList(
                ROIPool(output_size, spatial_scale=scale) for scale in scales
            )
        elif pooler_type == "ROIAlignRotated":
            self.level_poolers = nn.ModuleList(
                ROIAlignRotated(output_size, spatial_scale=scale, sampling_ratio=sampling_ratio)
                for scale in scales
            )
        else:
            raise ValueError(
                f"Unknown pooler type: {pooler_type!r}; expected one of {_POOLER_TYPES}"
            )

        # Level k has stride 2**k, i.e. scale 2**-k.
        min_level = -(math.log2(scales[0]))
        max_level = -(math.log2(scales[-1]))
        if not (
            math.isclose(min_level, int(min_level)) and math.isclose(max_level, int(max_level))
        ):
            raise ValueError(f"ROIPooler: feature map strides must be powers of 2, scales={scales}")
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        if len(scales) != self.max_level - self.min_level + 1:
            raise ValueError(f"ROIPooler: [{scales}] are not the scales of contiguous levels")
        if not 0 <= self.min_level <= self.max_level:
            raise ValueError(f"ROIPooler: invalid levels {self.min_level}..{self.max_level}")
        self.canonical_level = canonical_level
        if canonical_box_size <= 0:
            raise ValueError(f"ROIPooler: canonical_box_size must be > 0, got {canonical_box_size}")
        self.canonical_box_size = canonical_box_size

    def forward(self, x: list[torch.Tensor], box_lists: list[Boxes]) -> torch.Tensor:
        """
        Args:
            x (list[Tensor[N, C, H_l, W_l]]): the feature maps of each level, finest first,
                matching ``scales``.
            box_lists (list[Boxes] or list[RotatedBoxes]): N lists of boxes, in input-image
                coordinates.

        Returns:
            Tensor[M, C, H_o, W_o]: the pooled features, M the total number of boxes, in the
            order of the concatenated ``box_lists``.
        """
        num_level_assignments = len(self.level_poolers)
        if not isinstance(x, list) or not isinstance(box_lists, list):
            raise TypeError("ROIPooler: x and box_lists must both be lists")
        if len(x) != num_level_assignments:
            raise ValueError(
                f"ROIPooler: got {len(x)} feature levels for {num_level_assignments} scales"
            )
        if len(box_lists) != x[0].size(0):
            raise ValueError(
                f"ROIPooler: got {len(box_lists)} box lists for a batch of {x[0].size(0)} images"
            )
        if len(box_lists) == 0:
            return _create_zeros(None, x[0].shape[1], *self.output_size, x[0])

        pooler_fmt_boxes = convert_boxes_to_pooler_format(box_lists)
        if num_level_assignments == 1:
            return self.level_poolers[0](x[0], pooler_fmt_boxes)

        level_assignments = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        num_channels = x[0].shape[1]
        output = _create_zeros(pooler_fmt_boxes, num_channels, *self.output_size, x[0])
        for level, pooler in enumerate(self.level_poolers):
            inds = nonzero_tuple(level_assignments == level)[0]
            pooler_fmt_boxes_level = pooler_fmt_boxes[inds]
            # index_put_ (not item assignment) so that tracing records it.
            output.index_put_((inds,), pooler(x[level], pooler_fmt_boxes_level))
        return output

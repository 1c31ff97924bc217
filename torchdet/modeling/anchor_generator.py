"""Anchor generators: the reference boxes tiled over every feature map."""

from __future__ import annotations

import collections.abc
import math
from collections.abc import Sequence

import torch
from torch import nn

from torchdet.config import configurable
from torchdet.layers import ShapeSpec, move_device_like
from torchdet.structures import Boxes, RotatedBoxes
from torchdet.utils.registry import Registry

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "BufferList",
    "DefaultAnchorGenerator",
    "RotatedAnchorGenerator",
    "build_anchor_generator",
]

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
ANCHOR_GENERATOR_REGISTRY.__doc__ = """
Registry for anchor generators; called as ``obj(cfg, input_shape: list[ShapeSpec])``.
"""


class BufferList(nn.Module):
    """A list of non-persistent buffers: they follow ``.to(device)`` but stay out of state dicts."""

    def __init__(self, buffers: Sequence[torch.Tensor]):
        super().__init__()
        for i, buffer in enumerate(buffers):
            # Non-persistent: anchors are recomputed from the config, never loaded.
            self.register_buffer(str(i), buffer, persistent=False)

    def __len__(self) -> int:
        return len(self._buffers)

    def __iter__(self):
        return iter(self._buffers.values())


def _create_grid_offsets(
    size: Sequence[int], stride: int, offset: float, target_device_tensor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) shifts of every cell of a ``size = (H, W)`` grid, row-major, each ``(H*W,)``."""
    grid_height, grid_width = size[0], size[1]  # no int(): traced sizes stay dynamic
    shifts_x = move_device_like(
        torch.arange(
            offset * stride,
            grid_width * stride,
            step=stride,
            dtype=torch.float32,
            device=target_device_tensor.device,
        ),
        target_device_tensor,
    )
    shifts_y = move_device_like(
        torch.arange(
            offset * stride,
            grid_height * stride,
            step=stride,
            dtype=torch.float32,
            device=target_device_tensor.device,
        ),
        target_device_tensor,
    )
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    return shift_x.reshape(-1), shift_y.reshape(-1)


def _broadcast_params(params, num_features: int, name: str) -> list:
    """Turn ``params`` (a list, or a list of per-level lists) into one list per feature level.

    ``[32, 64]`` and ``[[32, 64]]`` both mean "(32, 64) on every level"; otherwise
    ``params`` must have one entry per level.
    """
    if not isinstance(params, collections.abc.Sequence) or isinstance(params, str):
        raise TypeError(f"{name} in anchor generator has to be a list! Got {params!r}")
    if not len(params):
        raise ValueError(f"{name} in anchor generator cannot be empty!")
    if not isinstance(params[0], collections.abc.Sequence):  # one list for all levels
        return [params] * num_features
    if len(params) == 1:
        return list(params) * num_features
    if len(params) != num_features:
        raise ValueError(
            f"Got {name} of length {len(params)} in anchor generator, "
            f"but the number of input features is {num_features}!"
        )
    return list(params)


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Axis-aligned anchors of given sizes and aspect ratios centred on every feature-map cell.

    Anchor ``a`` of cell ``(i, j)`` on a level of stride ``s`` is the cell anchor ``a`` shifted
    by ``((j + offset) * s, (i + offset) * s)``; the anchors of a level are ordered
    ``(i, j, a)`` row-major, i.e. matching a ``(N, A, H, W)`` head output permuted to
    ``(N, H, W, A)``.
    """

    box_dim: int = 4

    @configurable
    def __init__(self, *, sizes, aspect_ratios, strides: Sequence[int], offset: float = 0.5):
        """
        Args:
            sizes (list[list[float]] or list[float]): anchor sizes (sqrt of the area) per
                level, or one list used on every level.
            aspect_ratios (list[list[float]] or list[float]): height / width ratios, same
                broadcasting as ``sizes``.
            strides (list[int]): stride of each feature level.
            offset (float): relative position of the first anchor centre in a cell, in [0, 1).
        """
        super().__init__()
        self.strides = list(strides)
        self.num_features = len(self.strides)
        sizes = _broadcast_params(sizes, self.num_features, "sizes")
        aspect_ratios = _broadcast_params(aspect_ratios, self.num_features, "aspect_ratios")
        self.cell_anchors = self._calculate_anchors(sizes, aspect_ratios)
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"anchor offset must be in [0, 1), got {offset}")
        self.offset = offset

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]) -> dict:
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
            "strides": [x.stride for x in input_shape],
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
        }

    def _calculate_anchors(self, sizes, aspect_ratios) -> BufferList:
        cell_anchors = [
            self.generate_cell_anchors(s, a).float() for s, a in zip(sizes, aspect_ratios)
        ]
        return BufferList(cell_anchors)

    @property
    def num_cell_anchors(self) -> list[int]:
        """Alias of ``num_anchors``."""
        return self.num_anchors

    @property
    def num_anchors(self) -> list[int]:
        """Number of anchors per cell on each level (``len(sizes) * len(aspect_ratios)``)."""
        return [len(cell_anchors) for cell_anchors in self.cell_anchors]

    def _grid_anchors(self, grid_sizes: list[Sequence[int]]) -> list[torch.Tensor]:
        """Per level, ``Tensor[H * W * A, 4]`` of the anchors of every cell."""
        anchors = []
        for size, stride, base_anchors in zip(grid_sizes, self.strides, self.cell_anchors):
            shift_x, shift_y = _create_grid_offsets(size, stride, self.offset, base_anchors)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)  # (H*W, 4)
            anchors.append((shifts.view(-1, 1, 4) + base_anchors.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def generate_cell_anchors(
        self,
        sizes: Sequence[float] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1, 2),
    ) -> torch.Tensor:
        """The anchors of one cell, centred on (0, 0): ``Tensor[len(sizes) * len(ratios), 4]``.

        For size ``s`` and ratio ``r`` the anchor has area ``s * s`` and ``h / w = r``; the
        order is size-major.
        """
        anchors = []
        for size in sizes:
            area = size**2.0
            for aspect_ratio in aspect_ratios:
                w = math.sqrt(area / aspect_ratio)
                h = aspect_ratio * w
                anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(anchors)

    def forward(self, features: list[torch.Tensor]) -> list[Boxes]:
        """
        Args:
            features (list[Tensor[N, C, H_l, W_l]]): the feature maps, one per level.

        Returns:
            list[Boxes]: per level, the ``H_l * W_l * A`` anchors (the same for every image).
        """
        if len(features) != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: got {len(features)} feature maps for "
                f"{self.num_features} strides {self.strides}"
            )
        grid_sizes = [feature_map.shape[-2:] for feature_map in features]
        return [Boxes(x) for x in self._grid_anchors(grid_sizes)]


@ANCHOR_GENERATOR_REGISTRY.register()
class RotatedAnchorGenerator(nn.Module):
    """Rotated anchors ``(cx, cy, w, h, angle_degrees)`` for the RRPN, tiled like default ones."""

    box_dim: int = 5

    @configurable
    def __init__(
        self, *, sizes, aspect_ratios, strides: Sequence[int], angles, offset: float = 0.5
    ):
        """
        Args:
            sizes, aspect_ratios, strides, offset: as ``DefaultAnchorGenerator``.
            angles (list[list[float]] or list[float]): anchor angles in degrees, broadcast like
                ``sizes``.
        """
        super().__init__()
        self.strides = list(strides)
        self.num_features = len(self.strides)
        sizes = _broadcast_params(sizes, self.num_features, "sizes")
        aspect_ratios = _broadcast_params(aspect_ratios, self.num_features, "aspect_ratios")
        angles = _broadcast_params(angles, self.num_features, "angles")
        self.cell_anchors = BufferList(
            [
                self.generate_cell_anchors(s, a, r).float()
                for s, a, r in zip(sizes, aspect_ratios, angles)
            ]
        )
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"anchor offset must be in [0, 1), got {offset}")
        self.offset = offset

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]) -> dict:
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
            "strides": [x.stride for x in input_shape],
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
            "angles": cfg.MODEL.ANCHOR_GENERATOR.ANGLES,
        }

    @property
    def num_cell_anchors(self) -> list[int]:
        return self.num_anchors

    @property
    def num_anchors(self) -> list[int]:
        """Anchors per cell on each level (``len(sizes) * len(ratios) * len(angles)``)."""
        return [len(cell_anchors) for cell_anchors in self.cell_anchors]

    def _grid_anchors(self, grid_sizes: list[Sequence[int]]) -> list[torch.Tensor]:
        anchors = []
        for size, stride, base_anchors in zip(grid_sizes, self.strides, self.cell_anchors):
            shift_x, shift_y = _create_grid_offsets(size, stride, self.offset, base_anchors)
            zeros = torch.zeros_like(shift_x)
            shifts = torch.stack((shift_x, shift_y, zeros, zeros, zeros), dim=1)  # (H*W, 5)
            anchors.append((shifts.view(-1, 1, 5) + base_anchors.view(1, -1, 5)).reshape(-1, 5))
        return anchors

    def generate_cell_anchors(
        self,
        sizes: Sequence[float] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1, 2),
        angles: Sequence[float] = (-90, -60, -30, 0, 30, 60, 90),
    ) -> torch.Tensor:
        """One cell's anchors ``(0, 0, w, h, angle)``: ``Tensor[sizes * ratios * angles, 5]``."""
        anchors = []
        for size in sizes:
            area = size**2.0
            for aspect_ratio in aspect_ratios:
                w = math.sqrt(area / aspect_ratio)
                h = aspect_ratio * w
                anchors.extend([0, 0, w, h, a] for a in angles)
        return torch.tensor(anchors)

    def forward(self, features: list[torch.Tensor]) -> list[RotatedBoxes]:
        """
        Args:
            features (list[Tensor[N, C, H_l, W_l]]): the feature maps, one per level.

        Returns:
            list[RotatedBoxes]: per level, the ``H_l * W_l * A`` anchors.
        """
        if len(features) != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: got {len(features)} feature maps for "
                f"{self.num_features} strides {self.strides}"
            )
        grid_sizes = [feature_map.shape[-2:] for feature_map in features]
        return [RotatedBoxes(x) for x in self._grid_anchors(grid_sizes)]


def build_anchor_generator(cfg, input_shape: list[ShapeSpec]) -> nn.Module:
    """Build the anchor generator named by ``cfg.MODEL.ANCHOR_GENERATOR.NAME``."""
    anchor_generator = cfg.MODEL.ANCHOR_GENERATOR.NAME
    return ANCHOR_GENERATOR_REGISTRY.get(anchor_generator)(cfg, input_shape)

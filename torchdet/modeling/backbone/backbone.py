"""``Backbone``: the interface every feature extractor implements."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from torchdet.layers import ShapeSpec

__all__ = ["Backbone"]


class Backbone(nn.Module, metaclass=ABCMeta):
    """Abstract base class of network backbones.

    A backbone maps an image batch ``(N, C, H, W)`` to a dict of named feature maps; its
    ``output_shape()`` tells channels and stride of each, and ``padding_constraints`` how the
    input must be padded for the strides to divide it.
    """

    def __init__(self) -> None:
        super().__init__()

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Subclasses return ``{feature_name: Tensor[N, C_f, H / stride_f, W / stride_f]}``."""

    @property
    def size_divisibility(self) -> int:
        """Input height and width must be multiples of this (0: no constraint)."""
        return 0

    @property
    def padding_constraints(self) -> dict[str, int]:
        """Padding constraints, as Detectron2: ``{"size_divisibility": int, "square_size": int}``.

        An empty dict or a missing key means no constraint; ``square_size`` > 0 pads to a square.
        """
        return {}

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Return ``{name: ShapeSpec(channels=..., stride=...)}`` of every output feature."""
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

"""``ShapeSpec``: the shape of a feature map, passed between modules instead of tensors."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ShapeSpec"]


@dataclass
class ShapeSpec:
    """Channels, spatial size and stride of a feature map; any field may be unknown (``None``).

    Modules use it to describe what they consume and produce, so a head can be built from a
    backbone's ``output_shape()`` without running an input through it.
    """

    channels: int | None = None
    height: int | None = None
    width: int | None = None
    stride: int | None = None

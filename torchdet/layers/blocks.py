"""Building blocks shared by backbones and heads: a CNN block base class that knows its channels
and stride and can freeze itself, and a depthwise-separable convolution."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .batch_norm import FrozenBatchNorm2d, get_norm
from .wrappers import Conv2d

__all__ = ["CNNBlockBase", "DepthwiseSeparableConv2d"]


def _c2_msra_fill(module: nn.Module) -> None:
    # Caffe2's "MSRAFill" (fvcore's c2_msra_fill): He normal init over fan_out, zero bias.
    # (``modeling.weight_init`` has the same, but layers may not import modeling.)
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def _c2_xavier_fill(module: nn.Module) -> None:
    # Caffe2's "XavierFill" (fvcore's c2_xavier_fill): uniform He init with a=1, zero bias.
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class CNNBlockBase(nn.Module):
    """A CNN block with a known number of input and output channels and a stride.

    Subclasses implement ``forward(x)`` mapping ``(N, in_channels, H, W)`` to
    ``(N, out_channels, H / stride, W / stride)``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: total spatial stride of the block.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> CNNBlockBase:
        """Stop training this block: parameters no longer require grad and every BatchNorm
        becomes a ``FrozenBatchNorm2d`` (in place).

        Returns:
            the block itself.
        """
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


class DepthwiseSeparableConv2d(nn.Module):
    """A KxK depthwise convolution followed by a 1x1 pointwise convolution, each with optional
    norm and activation (https://arxiv.org/abs/1610.02357).

    Args:
        in_channels, out_channels: channels.
        kernel_size, padding, dilation: of the depthwise convolution.
        norm1, activation1: norm (see :func:`get_norm`) and activation after the depthwise conv.
        norm2, activation2: the same after the pointwise conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        dilation: int = 1,
        *,
        norm1: str | Callable[[int], nn.Module] | None = None,
        activation1: Callable[[torch.Tensor], torch.Tensor] | None = None,
        norm2: str | Callable[[int], nn.Module] | None = None,
        activation2: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.depthwise = Conv2d(
            in_channels,
            in_channels,
            kernel_size=kernel_size,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=not norm1,
            norm=get_norm(norm1, in_channels),
            activation=activation1,
        )
        self.pointwise = Conv2d(
            in_channels,
            out_channels,
            kernel_size=1,
            bias=not norm2,
            norm=get_norm(norm2, out_channels),
            activation=activation2,
        )
        _c2_msra_fill(self.depthwise)
        _c2_msra_fill(self.pointwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

"""Atrous Spatial Pyramid Pooling of DeepLab v3 (https://arxiv.org/abs/1706.05587)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import nn

from .batch_norm import get_norm
from .blocks import DepthwiseSeparableConv2d, _c2_xavier_fill
from .wrappers import Conv2d

__all__ = ["ASPP"]


class ASPP(nn.Module):
    """Parallel 1x1 conv, three dilated 3x3 convs and an image-pooling branch, concatenated and
    projected back to ``out_channels``.

    Args:
        in_channels: input channels.
        out_channels: channels of every branch and of the output.
        dilations: the three dilation rates of the 3x3 branches.
        norm: normalization of the conv branches (see :func:`get_norm`); ``""`` for none, which
            also gives the convs a bias. The pooling branch has no norm (its output is 1x1).
        activation: module applied after each branch and the projection (deep-copied).
        pool_kernel_size: ``(kh, kw)`` of a stride-1 average pool for the image-pooling branch
            (fixed-size training crops); None for global average pooling.
        dropout: dropout probability after the projection.
        use_depthwise_separable_conv: use depthwise-separable 3x3 branches (DeepLab v3+).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int],
        *,
        norm: str | Callable[[int], nn.Module] | None,
        activation: nn.Module | None,
        pool_kernel_size: Sequence[int] | None = None,
        dropout: float = 0.0,
        use_depthwise_separable_conv: bool = False,
    ) -> None:
        super().__init__()
        if len(dilations) != 3:
            raise ValueError(f"ASPP expects 3 dilations, got {len(dilations)}: {list(dilations)}")
        if pool_kernel_size is not None and len(pool_kernel_size) != 2:
            raise ValueError(f"ASPP: pool_kernel_size must be (kh, kw), got {pool_kernel_size}")
        self.pool_kernel_size = pool_kernel_size
        self.dropout = dropout
        use_bias = norm == ""
        self.convs = nn.ModuleList()
        self.convs.append(
            Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
                activation=deepcopy(activation),
            )
        )
        _c2_xavier_fill(self.convs[-1])
        for dilation in dilations:
            if use_depthwise_separable_conv:
                self.convs.append(
                    DepthwiseSeparableConv2d(
                        in_channels,
                        out_channels,
                        kernel_size=3,
                        padding=dilation,
                        dilation=dilation,
                        norm1=norm,
                        activation1=deepcopy(activation),
                        norm2=norm,
                        activation2=deepcopy(activation),
                    )
                )
            else:
                self.convs.append(
                    Conv2d(
                        in_channels,
                        out_channels,
                        kernel_size=3,
                        padding=dilation,
                        dilation=dilation,
                        bias=use_bias,
                        norm=get_norm(norm, out_channels),
                        activation=deepcopy(activation),
                    )
                )
                _c2_xavier_fill(self.convs[-1])
        pool: nn.Module
        if pool_kernel_size is None:
            pool = nn.AdaptiveAvgPool2d(1)
        else:
            pool = nn.AvgPool2d(kernel_size=tuple(pool_kernel_size), stride=1)
        image_pooling = nn.Sequential(
            pool, Conv2d(in_channels, out_channels, 1, bias=True, activation=deepcopy(activation))
        )
        _c2_xavier_fill(image_pooling[1])
        self.convs.append(image_pooling)

        self.project = Conv2d(
            5 * out_channels,
            out_channels,
            kernel_size=1,
            bias=use_bias,
            norm=get_norm(norm, out_channels),
            activation=deepcopy(activation),
        )
        _c2_xavier_fill(self.project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor[N, C, H, W]). Returns: Tensor[N, out_channels, H, W]."""
        size = x.shape[-2:]
        if self.pool_kernel_size is not None and (
            size[0] % self.pool_kernel_size[0] or size[1] % self.pool_kernel_size[1]
        ):
            raise ValueError(
                "ASPP: the input size must be divisible by pool_kernel_size; "
                f"input size {tuple(size)}, pool_kernel_size {tuple(self.pool_kernel_size)}"
            )
        res = [conv(x) for conv in self.convs]
        res[-1] = F.interpolate(res[-1], size=size, mode="bilinear", align_corners=False)
        out = self.project(torch.cat(res, dim=1))
        if self.dropout > 0:
            out = F.dropout(out, self.dropout, training=self.training)
        return out

"""Faster evaluation of ``Conv2d`` (+ norm + activation) modules, with the same results.

Two rewrites that change no parameter and no output beyond float rounding:

- a ``FrozenBatchNorm2d`` after a convolution is an affine map per output channel, so it is
  folded into the convolution's weight and bias (one pass over the weights instead of one
  over the whole feature map);
- on a channels-last (NHWC) input the weight is given the same layout, which oneDNN's CPU
  kernels run fastest and which spares a reorder of the weight inside every call.

The folded weights are recomputed on every call (negligible next to the convolution), so they
always reflect the current parameters, gradients included.
"""

from __future__ import annotations

import torch
from torch import nn

from torchdet.layers import FrozenBatchNorm2d

__all__ = ["conv_forward", "fold_frozen_batchnorm"]


def fold_frozen_batchnorm(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``conv`` with its ``FrozenBatchNorm2d`` (``conv.norm``) folded in.

    Returns:
        weight (Tensor[C_out, C_in / groups, kh, kw]), bias (Tensor[C_out]).
    """
    norm = conv.norm
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # (C_out,)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


def _is_channels_last(x: torch.Tensor) -> bool:
    return (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def conv_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an ``nn.Conv2d`` or a ``torchdet.layers.Conv2d`` (conv, norm, activation).

    Args:
        conv: the convolution module (its ``norm`` and ``activation``, if any, are applied).
        x (Tensor[N, C_in, H, W]): the input, in any memory layout.

    Returns:
        Tensor[N, C_out, H_out, W_out]: the same as ``conv(x)``, up to float rounding.
    """
    norm = getattr(conv, "norm", None)
    channels_last = _is_channels_last(x)
    folded = isinstance(norm, FrozenBatchNorm2d)
    if not folded and not channels_last:
        return conv(x)
    if folded:
        weight, bias = fold_frozen_batchnorm(conv)
        norm = None
    else:
        weight, bias = conv.weight, conv.bias
    if channels_last:
        weight = weight.contiguous(memory_format=torch.channels_last)
    if weight.dtype != x.dtype:
        weight = weight.to(x.dtype)
        bias = bias.to(x.dtype) if bias is not None else None
    x = conv._conv_forward(x, weight, bias)
    if norm is not None:
        x = norm(x)
    activation = getattr(conv, "activation", None)
    if activation is not None:
        x = activation(x)
    return x

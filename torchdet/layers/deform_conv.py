"""Deformable convolution v1 and v2 (modulated) in pure PyTorch, forward and backward on any device.

Shape shorthand: N images, C input channels, H x W input, O output channels, ``kh x kw`` kernel
(K = kh * kw positions), Ho x Wo output, G deformable groups, ``groups`` convolution groups.

Offsets follow the DCN layout: for deformable group g and kernel position k (row-major), channel
``g * 2K + 2k`` is the y (row) offset and ``g * 2K + 2k + 1`` the x offset; the modulation mask has
channel ``g * K + k``. Sampling point ``(ho * stride - pad + i * dilation + dy, ...)`` is read by
bilinear interpolation in which taps outside the image count as 0 (so a point within one pixel of
the border keeps a partial weight), as in the reference im2col kernels.

How it is computed: that sampling rule is exactly ``grid_sample(..., padding_mode="zeros")``, so
the deformable im2col is a single ``grid_sample`` call producing a ``(N, C * K, Ho * Wo)`` column
tensor (the ``(Ho, Wo)`` grid of every kernel position is stacked along the grid's height), then
one matmul with the ``(O, C * K)`` weight per convolution group. Autograd differentiates both
(input, offset, mask, weight, bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

__all__ = [
    "DeformConv",
    "ModulatedDeformConv",
    "deform_conv",
    "deform_conv2d",
    "modulated_deform_conv",
]

# Column tensors above this many elements are built a few images at a time.
_MAX_COLUMN_ELEMENTS = 1 << 28


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1


def _check_args(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    out_hw: tuple[int, int],
    groups: int,
    deformable_groups: int,
) -> None:
    if input.dim() != 4:
        raise ValueError(f"deform_conv: input must be (N, C, H, W), got {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"deform_conv: weight must be (O, C/groups, kh, kw), got {weight.shape}")
    n, c = input.shape[:2]
    o, c_per_group, kh, kw = weight.shape
    if groups < 1 or c % groups or o % groups or c_per_group * groups != c:
        raise ValueError(
            f"deform_conv: input has {c} channels, weight {tuple(weight.shape)} and "
            f"groups={groups}: need C divisible by groups and weight.shape[1] == C / groups"
        )
    if deformable_groups < 1 or c % deformable_groups:
        raise ValueError(
            f"deform_conv: {c} input channels are not divisible by "
            f"deformable_groups={deformable_groups}"
        )
    k = kh * kw
    expected = (n, 2 * deformable_groups * k, *out_hw)
    if tuple(offset.shape) != expected:
        raise ValueError(
            f"deform_conv: offset must have shape {expected} (N, 2 * deformable_groups * kh * kw,"
            f" Ho, Wo), got {tuple(offset.shape)}"
        )
    if mask is not None and tuple(mask.shape) != (n, deformable_groups * k, *out_hw):
        raise ValueError(
            f"deform_conv: mask must have shape {(n, deformable_groups * k, *out_hw)}, "
            f"got {tuple(mask.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (o,):
        raise ValueError(f"deform_conv: bias must have shape ({o},), got {tuple(bias.shape)}")
    for name, t in (("offset", offset), ("mask", mask), ("weight", weight), ("bias", bias)):
        if t is not None and t.device != input.device:
            raise ValueError(f"deform_conv: {name} is on {t.device}, input on {input.device}")


def _deformable_columns(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    deformable_groups: int,
) -> torch.Tensor:
    """Bilinear-sampled im2col: Tensor[N, C * K, Ho * Wo], channel-major then kernel position."""
    n, c, h, w = input.shape
    ho, wo = offset.shape[2:]
    kh, kw = kernel
    k = kh * kw
    g = deformable_groups
    dtype, device = input.dtype, input.device
    # Undeformed sampling positions (K, Ho, 1) and (K, 1, Wo).
    ki = torch.arange(kh, device=device, dtype=dtype).repeat_interleave(kw)
    kj = torch.arange(kw, device=device, dtype=dtype).repeat(kh)
    base_y = torch.arange(ho, device=device, dtype=dtype) * stride[0] - padding[0]
    base_x = torch.arange(wo, device=device, dtype=dtype) * stride[1] - padding[1]
    base_y = (base_y[None, :] + ki[:, None] * dilation[0])[:, :, None]
    base_x = (base_x[None, :] + kj[:, None] * dilation[1])[:, None, :]
    offset = offset.view(n, g, k, 2, ho, wo)
    y = base_y + offset[:, :, :, 0]  # (N, G, K, Ho, Wo)
    x = base_x + offset[:, :, :, 1]
    # grid_sample's align_corners=False convention: pixel i is centred at (2i + 1) / size - 1.
    grid = torch.stack([(2.0 * x + 1.0) / w - 1.0, (2.0 * y + 1.0) / h - 1.0], dim=-1)
    grid = grid.view(n * g, k * ho, wo, 2)
    cols = F.grid_sample(
        input.reshape(n * g, c // g, h, w),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (N * G, C / G, K * Ho, Wo)
    if mask is not None:
        cols = cols.view(n, g, c // g, k, ho * wo)
        mask = mask.view(n, g, 1, k, ho * wo)
        if torch.is_grad_enabled() and (cols.requires_grad or mask.requires_grad):
            cols = cols * mask
        else:  # inference: modulate in place, saving a second column-sized buffer
            cols.mul_(mask)
    return cols.reshape(n, c * k, ho * wo)


def _deform_conv_impl(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    groups: int,
    deformable_groups: int,
) -> torch.Tensor:
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = weight.shape[2:]
    n, c, h, w = input.shape
    ho = _output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _output_size(w, kw, stride[1], padding[1], dilation[1])
    _check_args(input, offset, mask, weight, bias, (ho, wo), groups, deformable_groups)
    o = weight.shape[0]
    if n == 0 or ho <= 0 or wo <= 0:
        return input.new_zeros((n, o, max(ho, 0), max(wo, 0)))

    # Half precision is computed in float32 (the reference kernels accumulate in float too).
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    x = input.to(dtype)
    offset = offset.to(dtype)
    mask = None if mask is None else mask.to(dtype)
    wmat = weight.to(dtype).reshape(groups, o // groups, -1)  # (groups, O/groups, C/groups * K)

    per_image = c * kh * kw * ho * wo
    step = max(1, _MAX_COLUMN_ELEMENTS // max(per_image, 1))
    outs = []
    for i in range(0, n, step):  # image chunks bound the column tensor's memory
        sl = slice(i, i + step)
        cols = _deformable_columns(
            x[sl],
            offset[sl],
            None if mask is None else mask[sl],
            (kh, kw),
            stride,
            padding,
            dilation,
            deformable_groups,
        )
        cols = cols.view(cols.shape[0], groups, -1, ho * wo)
        outs.append(torch.matmul(wmat, cols).view(-1, o, ho, wo))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    if bias is not None:
        out = out + bias.to(dtype).view(1, o, 1, 1)
    return out.to(input.dtype)


def deform_conv(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deformable_groups: int = 1,
    im2col_step: int = 64,
) -> torch.Tensor:
    """Deformable convolution v1 (Detectron2's functional ``deform_conv``).

    Args:
        input (Tensor[N, C, H, W]): input feature map.
        offset (Tensor[N, 2 * deformable_groups * kh * kw, Ho, Wo]): (dy, dx) per kernel position.
        weight (Tensor[O, C / groups, kh, kw]): convolution weight.
        stride, padding, dilation: int or (h, w) pair, as in ``nn.Conv2d``.
        groups: convolution groups.
        deformable_groups: channel groups that each get their own offsets.
        im2col_step: accepted for signature compatibility; memory is bounded internally instead.

    Returns:
        Tensor[N, O, Ho, Wo] in the input's dtype.
    """
    del im2col_step
    return _deform_conv_impl(
        input, offset, None, weight, None, stride, padding, dilation, groups, deformable_groups
    )


def modulated_deform_conv(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deformable_groups: int = 1,
) -> torch.Tensor:
    """Modulated deformable convolution (DCN v2, Detectron2's ``modulated_deform_conv``).

    Args:
        input (Tensor[N, C, H, W]): input feature map.
        offset (Tensor[N, 2 * deformable_groups * kh * kw, Ho, Wo]): (dy, dx) per kernel position.
        mask (Tensor[N, deformable_groups * kh * kw, Ho, Wo]): modulation scalar of each sample
            (usually a sigmoid output).
        weight (Tensor[O, C / groups, kh, kw]), bias (Tensor[O] or None).
        stride, padding, dilation, groups, deformable_groups: as in :func:`deform_conv`.

    Returns:
        Tensor[N, O, Ho, Wo] in the input's dtype.
    """
    return _deform_conv_impl(
        input, offset, mask, weight, bias, stride, padding, dilation, groups, deformable_groups
    )


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """torchvision-style deformable convolution (v1, or v2 when ``mask`` is given).

    The number of deformable groups is read from the offset's channels,
    ``offset.shape[1] // (2 * kh * kw)``; no convolution groups.

    Args:
        input (Tensor[N, C, H, W]), offset (Tensor[N, 2 * G * kh * kw, Ho, Wo]),
        weight (Tensor[O, C, kh, kw]), bias (Tensor[O] or None),
        mask (Tensor[N, G * kh * kw, Ho, Wo] or None).

    Returns:
        Tensor[N, O, Ho, Wo].
    """
    k = weight.shape[2] * weight.shape[3] if weight.dim() == 4 else 1
    if offset.dim() != 4 or offset.shape[1] % (2 * k):
        raise ValueError(
            f"deform_conv2d: offset channels must be a multiple of 2 * kh * kw = {2 * k}, "
            f"got offset of shape {tuple(offset.shape)}"
        )
    groups_of_offsets = max(offset.shape[1] // (2 * k), 1)
    return _deform_conv_impl(
        input, offset, mask, weight, bias, stride, padding, dilation, 1, groups_of_offsets
    )


class _DeformConvBase(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int | tuple[int, int],
        dilation: int | tuple[int, int],
        groups: int,
        deformable_groups: int,
        bias: bool,
        norm: nn.Module | None,
        activation: nn.Module | None,
    ) -> None:
        super().__init__()
        if in_channels % groups:
            raise ValueError(f"in_channels={in_channels} is not divisible by groups={groups}")
        if out_channels % groups:
            raise ValueError(f"out_channels={out_channels} is not divisible by groups={groups}")
        if in_channels % deformable_groups:
            raise ValueError(
                f"in_channels={in_channels} is not divisible by "
                f"deformable_groups={deformable_groups}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deformable_groups = deformable_groups
        self.norm = norm
        self.activation = activation
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        if self.bias is not None:
            nn.init.constant_(self.bias, 0.0)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, groups={self.groups}, "
            f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}"
        )


class DeformConv(_DeformConvBase):
    """Deformable convolution v1 layer (Detectron2's ``layers.DeformConv``; no bias).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as in
            ``nn.Conv2d``.
        deformable_groups: channel groups with separate offsets.
        bias: must be False (the reference layer has no bias; put it in ``norm`` instead).
        norm: optional module applied to the output; activation: optional callable after it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = False,
        norm: nn.Module | None = None,
        activation: nn.Module | None = None,
    ) -> None:
        if bias:
            raise ValueError("DeformConv has no bias (as in Detectron2); use ModulatedDeformConv")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            deformable_groups,
            False,
            norm,
            activation,
        )

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (Tensor[N, C, H, W]); offset (Tensor[N, 2 * deformable_groups * kh * kw, Ho, Wo]).

        Returns:
            Tensor[N, O, Ho, Wo].
        """
        out = deform_conv(
            x,
            offset,
            self.weight,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deformable_groups,
        )
        return self._finish(out)


class ModulatedDeformConv(_DeformConvBase):
    """Modulated deformable convolution layer (DCN v2, Detectron2's ``ModulatedDeformConv``).

    Args: as :class:`DeformConv`, with ``bias=True`` by default (initialised to 0).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
        norm: nn.Module | None = None,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            deformable_groups,
            bias,
            norm,
            activation,
        )

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (Tensor[N, C, H, W]); offset (Tensor[N, 2 * deformable_groups * kh * kw, Ho, Wo]);
            mask (Tensor[N, deformable_groups * kh * kw, Ho, Wo]).

        Returns:
            Tensor[N, O, Ho, Wo].
        """
        out = modulated_deform_conv(
            x,
            offset,
            mask,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deformable_groups,
        )
        return self._finish(out)

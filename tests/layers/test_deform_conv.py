"""Deformable convolution: reference parity, reductions to nn.Conv2d, loop reference, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdet.layers import DeformConv, ModulatedDeformConv
from torchdet.layers.deform_conv import (
    deform_conv,
    deform_conv2d,
    modulated_deform_conv,
)


def _naive(x, offset, mask, weight, bias, stride, pad, dil, groups, dgroups):
    """Per-output-pixel loop over the DCN definition (float64)."""
    x = x.double()
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    k = kh * kw

    def sample(img, y, xx):  # zero outside, partial weights at borders
        if y <= -1 or y >= h or xx <= -1 or xx >= w:
            return 0.0
        y0, x0 = math.floor(y), math.floor(xx)
        total = 0.0
        for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xi, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                if 0 <= yi < h and 0 <= xi < w:
                    total += wy * wx * img[yi, xi].item()
        return total

    cols = torch.zeros(n, c, k, ho, wo, dtype=torch.float64)
    for b in range(n):
        for ch in range(c):
            g = ch // (c // dgroups)
            for i in range(kh):
                for j in range(kw):
                    kk = i * kw + j
                    for p in range(ho):
                        for q in range(wo):
                            dy = offset[b, g * 2 * k + 2 * kk, p, q].item()
                            dx = offset[b, g * 2 * k + 2 * kk + 1, p, q].item()
                            v = sample(x[b, ch], p * stride - pad + i * dil + dy,
                                       q * stride - pad + j * dil + dx)  # fmt: skip
                            if mask is not None:
                                v *= mask[b, g * k + kk, p, q].item()
                            cols[b, ch, kk, p, q] = v
    cols = cols.view(n, groups, cg * k, ho * wo)
    out = torch.matmul(weight.double().view(groups, o // groups, cg * k), cols)
    out = out.view(n, o, ho, wo)
    if bias is not None:
        out = out + bias.double().view(1, -1, 1, 1)
    return out


def test_parity_with_reference(ops_cases):
    for name in ("deform_conv", "modulated_deform_conv"):
        if name not in ops_cases:
            pytest.skip(f"ops.pt has no {name} case")
    case = ops_cases["deform_conv"]
    inp = case["inputs"]
    layer = DeformConv(8, 16, 3, stride=1, padding=1)
    with torch.no_grad():
        layer.weight.copy_(inp["weight"])
    out = layer(inp["input"], inp["offset"])
    assert (out - case["output"]).abs().max().item() <= 1e-4

    case = ops_cases["modulated_deform_conv"]
    inp = case["inputs"]
    layer = ModulatedDeformConv(8, 16, 3, stride=1, padding=1)
    with torch.no_grad():
        layer.weight.copy_(inp["weight"])
        layer.bias.copy_(inp["bias"])
    out = layer(inp["input"], inp["offset"], inp["mask"])
    assert (out - case["output"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 2), (2, 1, 1, 4)],
)
def test_zero_offsets_equal_conv2d(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 11, 9, generator=gen)
    conv = nn.Conv2d(8, 12, 3, stride, padding, dilation, groups, bias=False)
    dcn = DeformConv(8, 12, 3, stride, padding, dilation, groups)
    with torch.no_grad():
        dcn.weight.copy_(conv.weight)
    ref = conv(x)
    offset = torch.zeros(2, 18, *ref.shape[2:])
    torch.testing.assert_close(dcn(x, offset), ref, atol=1e-5, rtol=1e-5)


def test_modulated_with_unit_mask_and_zero_offsets_equals_conv2d_with_bias():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 7, 8, generator=gen)
    conv = nn.Conv2d(4, 6, (3, 2), padding=(1, 0))
    dcn = ModulatedDeformConv(4, 6, (3, 2), padding=(1, 0), deformable_groups=2)
    with torch.no_grad():
        dcn.weight.copy_(conv.weight)
        dcn.bias.copy_(conv.bias)
    ref = conv(x)
    offset = torch.zeros(1, 2 * 2 * 6, *ref.shape[2:])
    mask = torch.ones(1, 2 * 6, *ref.shape[2:])
    torch.testing.assert_close(dcn(x, offset, mask), ref, atol=1e-5, rtol=1e-5)
    # A mask of 0.5 halves the convolution (not the bias).
    torch.testing.assert_close(
        dcn(x, offset, mask * 0.5) - conv.bias.view(1, -1, 1, 1),
        (ref - conv.bias.view(1, -1, 1, 1)) * 0.5,
        atol=1e-5,
        rtol=1e-5,
    )


def test_integer_offset_shifts_the_sampling():
    # dx = +1 everywhere reads one pixel to the right: output column q sees input columns
    # q .. q + 2 (zeros past the right border) instead of q - 1 .. q + 1.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 6, 7, generator=gen)
    weight = torch.randn(5, 3, 3, 3, generator=gen)
    offset = torch.zeros(1, 18, 6, 7)
    offset[:, 1::2] = 1.0
    shifted = F.pad(x, (0, 2, 1, 1))
    torch.testing.assert_close(
        deform_conv(x, offset, weight, padding=1), F.conv2d(shifted, weight),
        atol=1e-5, rtol=1e-5,
    )  # fmt: skip


def test_fractional_offsets_at_borders_match_loop_reference():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, 6, generator=gen)
    weight = torch.randn(6, 2, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    offset = torch.randn(2, 2 * 2 * 9, 3, 3, generator=gen) * 2.5  # many points off the image
    mask = torch.rand(2, 2 * 9, 3, 3, generator=gen)
    out = modulated_deform_conv(x, offset, mask, weight, bias, 2, 1, 1, 2, 2)
    ref = _naive(x, offset, mask, weight, bias, 2, 1, 1, 2, 2)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    out = deform_conv(x, offset, weight, 2, 1, 1, 2, 2)
    ref = _naive(x, offset, None, weight, None, 2, 1, 1, 2, 2)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_gradcheck_input_offset_mask_weight_bias():
    gen = torch.Generator().manual_seed(4)
    d = torch.float64
    x = torch.randn(1, 2, 4, 5, dtype=d, generator=gen, requires_grad=True)
    # Offsets away from integers: the bilinear kernel is not differentiable at grid lines.
    offset = (torch.rand(1, 18, 4, 5, dtype=d, generator=gen) * 3 - 1.5 + 0.13).requires_grad_()
    mask = torch.rand(1, 9, 4, 5, dtype=d, generator=gen, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, dtype=d, generator=gen, requires_grad=True)
    bias = torch.randn(3, dtype=d, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: modulated_deform_conv(*a, 1, 1), (x, offset, mask, weight, bias)
    )
    assert torch.autograd.gradcheck(lambda *a: deform_conv(*a, 1, 1), (x, offset, weight))


def test_torchvision_style_wrapper_and_low_precision():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 6, 6, generator=gen)
    w = torch.randn(2, 4, 3, 3, generator=gen)
    off = torch.randn(1, 2 * 2 * 9, 6, 6, generator=gen)
    mask = torch.rand(1, 2 * 9, 6, 6, generator=gen)
    ref = modulated_deform_conv(x, off, mask, w, None, 1, 1, 1, 1, 2)
    torch.testing.assert_close(deform_conv2d(x, off, w, padding=1, mask=mask), ref)
    out = deform_conv(x.bfloat16(), off, w, 1, 1, 1, 1, 2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), deform_conv(x.bfloat16().float(), off, w, 1, 1, 1, 1, 2), atol=0.05, rtol=0.02
    )


def test_module_options_and_empty_batch():
    layer = DeformConv(4, 6, 3, padding=1, norm=nn.BatchNorm2d(6), activation=torch.relu)
    layer.eval()
    out = layer(torch.randn(2, 4, 5, 5), torch.zeros(2, 18, 5, 5))
    assert out.shape == (2, 6, 5, 5) and bool((out >= 0).all())
    assert layer(torch.zeros(0, 4, 5, 5), torch.zeros(0, 18, 5, 5)).shape == (0, 6, 5, 5)
    assert "deformable_groups=1" in repr(layer)
    assert ModulatedDeformConv(4, 6, 3).bias is not None
    assert DeformConv(4, 6, 3).bias is None


def test_bad_arguments_raise():
    layer = DeformConv(4, 6, 3, padding=1)
    with pytest.raises(ValueError, match="offset"):
        layer(torch.randn(1, 4, 5, 5), torch.zeros(1, 9, 5, 5))
    with pytest.raises(ValueError, match="mask"):
        ModulatedDeformConv(4, 6, 3, padding=1)(
            torch.randn(1, 4, 5, 5), torch.zeros(1, 18, 5, 5), torch.zeros(1, 8, 5, 5)
        )
    with pytest.raises(ValueError, match="groups"):
        DeformConv(5, 6, 3, groups=2)
    with pytest.raises(ValueError, match="bias"):
        DeformConv(4, 6, 3, bias=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 9, 10, generator=gen)
    off = torch.randn(2, 18, 9, 10, generator=gen) * 2
    mask = torch.rand(2, 9, 9, 10, generator=gen)
    w = torch.randn(5, 4, 3, 3, generator=gen)
    cpu = modulated_deform_conv(x, off, mask, w, None, 1, 1)
    gpu = modulated_deform_conv(x.cuda(), off.cuda(), mask.cuda(), w.cuda(), None, 1, 1)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)

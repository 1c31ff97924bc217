"""Tests of torchdet.modeling.conv_fusion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchdet.layers import Conv2d, FrozenBatchNorm2d, get_norm
from torchdet.modeling.conv_fusion import conv_forward, fold_frozen_batchnorm


def _frozen_bn(channels: int) -> FrozenBatchNorm2d:
    bn = FrozenBatchNorm2d(channels)
    bn.weight.uniform_(0.5, 1.5)
    bn.bias.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    return bn


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_frozen_bn_folding_matches_conv_then_norm(bias, channels_last):
    conv = Conv2d(6, 8, 3, padding=1, stride=2, bias=bias, norm=_frozen_bn(8), activation=nn.ReLU())
    x = torch.randn(2, 6, 9, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = conv(x)
        got = conv_forward(conv, x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert got.shape == (2, 8, 5, 6)


def test_fold_frozen_batchnorm_hand_computed():
    conv = Conv2d(1, 1, 1, bias=True, norm=FrozenBatchNorm2d(1, eps=0.0))
    conv.weight.data.fill_(2.0)
    conv.bias.data.fill_(1.0)
    conv.norm.weight.fill_(3.0)
    conv.norm.bias.fill_(0.5)
    conv.norm.running_mean.fill_(4.0)
    conv.norm.running_var.fill_(0.25)  # std 0.5: scale 3 / 0.5 = 6
    weight, bias = fold_frozen_batchnorm(conv)
    # y = ((2x + 1) - 4) * 6 + 0.5 = 12x - 17.5
    assert weight.item() == 12.0 and bias.item() == -17.5


def test_channels_last_plain_and_group_norm_convs():
    x = torch.randn(1, 32, 7, 7).contiguous(memory_format=torch.channels_last)
    for conv in (nn.Conv2d(32, 4, 3, padding=1), Conv2d(32, 32, 1, norm=get_norm("GN", 32))):
        with torch.no_grad():
            assert torch.allclose(conv_forward(conv, x), conv(x.contiguous()), atol=1e-5)


def test_gradients_through_folded_conv_match():
    conv = Conv2d(4, 6, 3, padding=1, bias=False, norm=_frozen_bn(6))
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    conv_forward(conv, x).square().sum().backward()
    gw, gx = conv.weight.grad.clone(), x.grad.clone()
    conv.weight.grad = None
    x.grad = None
    conv(x).square().sum().backward()
    assert torch.allclose(gw, conv.weight.grad, rtol=1e-4, atol=1e-5)
    assert torch.allclose(gx, x.grad, rtol=1e-4, atol=1e-5)

"""Tests for ``torchdet.layers.blocks`` (CNNBlockBase, DepthwiseSeparableConv2d) and
``torchdet.layers.aspp.ASPP``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdet.layers import (
    ASPP,
    CNNBlockBase,
    Conv2d,
    DepthwiseSeparableConv2d,
    FrozenBatchNorm2d,
)


class _Block(CNNBlockBase):
    def __init__(self):
        super().__init__(3, 8, stride=2)
        self.conv = Conv2d(3, 8, 3, stride=2, padding=1, bias=False, norm=nn.BatchNorm2d(8))

    def forward(self, x):
        return F.relu(self.conv(x))


def test_cnn_block_base_attributes_and_freeze():
    block = _Block()
    assert (block.in_channels, block.out_channels, block.stride) == (3, 8, 2)
    with torch.no_grad():
        block.conv.norm.running_mean.copy_(torch.randn(8))
        block.conv.norm.running_var.copy_(torch.rand(8) + 0.5)
        block.conv.norm.weight.copy_(torch.rand(8) + 0.5)
    x = torch.randn(2, 3, 8, 8)
    expected = block.eval()(x)
    assert block.freeze() is block
    assert isinstance(block.conv.norm, FrozenBatchNorm2d)
    assert all(not p.requires_grad for p in block.parameters())
    # Frozen statistics are used even in training mode.
    torch.testing.assert_close(block.train()(x), expected, rtol=1e-5, atol=1e-5)


def test_depthwise_separable_conv_structure_and_values():
    m = DepthwiseSeparableConv2d(
        4, 6, kernel_size=3, padding=2, dilation=2, norm1="BN", activation1=F.relu, norm2=None
    )
    assert m.depthwise.groups == 4 and m.depthwise.dilation == (2, 2)
    assert m.depthwise.bias is None and isinstance(m.depthwise.norm, nn.BatchNorm2d)
    assert m.pointwise.bias is not None and m.pointwise.norm is None
    assert m.pointwise.weight.shape == (6, 4, 1, 1)
    assert sorted(m.state_dict())[:3] == [
        "depthwise.norm.bias",
        "depthwise.norm.num_batches_tracked",
        "depthwise.norm.running_mean",
    ]
    m.eval()
    x = torch.randn(2, 4, 7, 9)
    dw = F.conv2d(x, m.depthwise.weight, None, padding=2, dilation=2, groups=4)
    expected = F.conv2d(F.relu(m.depthwise.norm(dw)), m.pointwise.weight, m.pointwise.bias)
    out = m(x)
    assert out.shape == (2, 6, 7, 9)
    torch.testing.assert_close(out, expected)
    # MSRA init: zero bias, weights of fan-out scale.
    assert m.pointwise.bias.abs().max().item() == 0.0


def _aspp_reference(aspp: ASPP, x: torch.Tensor, dilations) -> torch.Tensor:
    def conv(c, inp, **kw):
        out = F.conv2d(inp, c.weight, c.bias, **kw)
        if c.norm is not None:
            out = c.norm(out)
        return F.relu(out)

    branches = [conv(aspp.convs[0], x)]
    for conv_m, d in zip(aspp.convs[1:4], dilations):
        branches.append(conv(conv_m, x, padding=d, dilation=d))
    pooled = conv(aspp.convs[4][1], x.mean(dim=(2, 3), keepdim=True))
    branches.append(pooled.expand(-1, -1, *x.shape[-2:]))
    return conv(aspp.project, torch.cat(branches, 1))


@pytest.mark.parametrize("norm", ["", "BN"])
def test_aspp_matches_explicit_branches(norm):
    dilations = (1, 2, 3)
    aspp = ASPP(5, 4, dilations, norm=norm, activation=nn.ReLU()).eval()
    x = torch.randn(2, 5, 9, 11)
    out = aspp(x)
    assert out.shape == (2, 4, 9, 11)
    torch.testing.assert_close(out, _aspp_reference(aspp, x, dilations), rtol=1e-5, atol=1e-5)
    # Detectron2's parameter names, so DeepLab checkpoints load.
    keys = set(aspp.state_dict())
    assert {"convs.0.weight", "convs.3.weight", "convs.4.1.weight", "convs.4.1.bias"} <= keys
    assert "project.weight" in keys
    assert ("convs.0.norm.running_var" in keys) == (norm == "BN")
    assert ("convs.0.bias" in keys) == (norm == "")


def test_aspp_pool_kernel_and_options():
    aspp = ASPP(3, 2, [1, 2, 3], norm="", activation=nn.ReLU(), pool_kernel_size=(4, 4))
    assert isinstance(aspp.convs[4][0], nn.AvgPool2d)
    x = torch.randn(1, 3, 8, 8)
    assert aspp(x).shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match="divisible by pool_kernel_size"):
        aspp(torch.randn(1, 3, 6, 8))
    with pytest.raises(ValueError, match="3 dilations"):
        ASPP(3, 2, [1, 2], norm="", activation=nn.ReLU())
    sep = ASPP(3, 2, [1, 2, 3], norm="BN", activation=nn.ReLU(), use_depthwise_separable_conv=True)
    assert isinstance(sep.convs[1], DepthwiseSeparableConv2d)
    assert sep.convs[2].depthwise.dilation == (2, 2)
    # Dropout is active only in training.
    drop = ASPP(3, 2, [1, 2, 3], norm="", activation=None, dropout=0.5)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(drop.eval()(x), drop.eval()(x))
    zeros_eval = int((drop.eval()(x) == 0).sum())
    assert int((drop.train()(x) == 0).sum()) > zeros_eval

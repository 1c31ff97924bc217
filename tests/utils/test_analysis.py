"""FLOP, activation and parameter counts against hand-computed values."""

import pytest
import torch
from torch import nn

from torchdet.utils.analysis import (
    FlopCountAnalysis,
    activation_count_operators,
    flop_count_operators,
    parameter_count,
    parameter_count_table,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)  # 8x8 input -> 4 x 6 x 6 output, 27 MACs each
        self.fc = nn.Linear(144, 2)  # 288 MACs
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.fc(self.conv(x).flatten(1)))


CONV_MACS = 4 * 6 * 6 * 27
FC_MACS = 144 * 2


def test_flop_count_analysis():
    x = torch.rand(2, 3, 8, 8)  # batch of 2: twice the flops
    f = FlopCountAnalysis(Net().eval(), x)
    assert f.by_operator() == {"conv": 2 * CONV_MACS, "linear": 2 * FC_MACS}
    assert f.total() == 2 * (CONV_MACS + FC_MACS)
    assert f.total("conv") == 2 * CONV_MACS
    assert f.by_module()["fc"] == 2 * FC_MACS
    assert f.total("bn") == 0  # a module without counted ops
    with pytest.raises(KeyError, match="nope"):
        f.total("nope")
    with pytest.raises(TypeError, match="nn.Module"):
        FlopCountAnalysis(lambda x: x, x)


def test_flop_count_operators_in_gflops_restores_mode():
    model = Net().train()
    out = flop_count_operators(model, torch.rand(1, 3, 8, 8))
    assert out["conv"] == pytest.approx(CONV_MACS / 1e9)
    assert out["linear"] == pytest.approx(FC_MACS / 1e9)
    assert model.training


def test_activation_count_operators():
    out = activation_count_operators(Net(), torch.rand(1, 3, 8, 8))
    assert out == {"conv": pytest.approx(144 / 1e6), "linear": pytest.approx(2 / 1e6)}


def test_parameter_count_and_table():
    model = Net()
    counts = parameter_count(model)
    assert counts[""] == 108 + 4 + 288 + 2 + 2 + 2
    assert counts["conv"] == 112 and counts["fc.weight"] == 288 and counts["bn"] == 4
    table = parameter_count_table(model, max_depth=1)
    assert "conv" in table and "conv.weight" not in table
    deep = parameter_count_table(model, max_depth=2)
    assert "(4, 3, 3, 3)" in deep
    with pytest.raises(ValueError, match="max_depth"):
        parameter_count_table(model, max_depth=0)


def test_empty_model():
    assert parameter_count(nn.Identity()) == {"": 0}
    assert FlopCountAnalysis(nn.Identity(), torch.rand(2)).total() == 0

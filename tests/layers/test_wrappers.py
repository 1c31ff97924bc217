"""Tests for ``torchdet.layers.wrappers`` and ``ShapeSpec``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdet.layers import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Linear,
    ShapeSpec,
    cat,
    check_if_dynamo_compiling,
    cross_entropy,
    empty_input_loss_func_wrapper,
    interpolate,
    move_device_like,
    nonzero_tuple,
    shapes_to_tensor,
)


def test_conv2d_applies_norm_then_activation():
    norm = nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(4))
        norm.bias.copy_(torch.randn(4))
    conv = Conv2d(3, 4, kernel_size=3, padding=1, bias=False, norm=norm, activation=F.relu)
    x = torch.randn(2, 3, 6, 5)
    expected = F.relu(norm(F.conv2d(x, conv.weight, None, padding=1)))
    torch.testing.assert_close(conv(x), expected)
    assert "norm.running_mean" in conv.state_dict()
    plain = Conv2d(3, 4, 1)
    assert plain.norm is None and plain.activation is None
    torch.testing.assert_close(plain(x), F.conv2d(x, plain.weight, plain.bias))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_conv2d_scripts():
    conv = Conv2d(3, 4, 3, padding=1, norm=nn.BatchNorm2d(4)).eval()
    scripted = torch.jit.script(conv)
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(scripted(x), conv(x))


def test_conv2d_empty_batch():
    conv = Conv2d(
        3, 8, kernel_size=3, stride=2, padding=1, norm=nn.BatchNorm2d(8), activation=F.relu
    )
    out = conv.eval()(torch.zeros(0, 3, 10, 9))
    assert out.shape == (0, 8, 5, 5)
    sync = Conv2d(3, 8, kernel_size=1, norm=nn.SyncBatchNorm(8)).train()
    with pytest.raises(ValueError, match="SyncBatchNorm does not support empty inputs"):
        sync(torch.zeros(0, 3, 4, 4))


def test_aliases_are_torch_layers():
    assert ConvTranspose2d is nn.ConvTranspose2d
    assert BatchNorm2d is nn.BatchNorm2d
    assert Linear is nn.Linear
    assert interpolate is F.interpolate
    assert interpolate(torch.zeros(0, 2, 3, 3), scale_factor=2).shape == (0, 2, 6, 6)


def test_cat():
    a = torch.ones(2, 3)
    assert cat([a]) is a
    assert cat([a, torch.zeros(1, 3)]).tolist() == [[1.0] * 3, [1.0] * 3, [0.0] * 3]
    assert cat((a, a), dim=1).shape == (2, 6)
    with pytest.raises(ValueError, match="empty"):
        cat([])
    with pytest.raises(TypeError, match="list or tuple"):
        cat(a)


def test_cross_entropy_empty_and_regular():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = cross_entropy(logits, torch.zeros(0, dtype=torch.int64))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad.shape == (0, 5)
    x = torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(cross_entropy(x, y), F.cross_entropy(x, y))
    # Only "mean" over nothing is special-cased; "sum" keeps PyTorch's behaviour.
    assert cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), reduction="sum") == 0


def test_empty_input_loss_func_wrapper_passes_kwargs():
    calls = []

    def loss(input, target, *, reduction="mean", weight=None):
        calls.append((reduction, weight))
        return (input - target).abs().sum()

    wrapped = empty_input_loss_func_wrapper(loss)
    assert wrapped(torch.ones(2), torch.zeros(2), weight=3).item() == 2.0
    assert calls == [("mean", 3)]
    assert wrapped(torch.ones(0), torch.zeros(0)).item() == 0.0
    assert len(calls) == 1  # not called for an empty target
    assert wrapped.__name__ == "loss"


def test_nonzero_tuple():
    x = torch.tensor([[0, 1], [1, 0]])
    rows, cols = nonzero_tuple(x)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    (idx,) = nonzero_tuple(torch.tensor(True))
    assert idx.tolist() == [0]
    (idx,) = nonzero_tuple(torch.tensor(0))
    assert idx.tolist() == []


def test_shapes_to_tensor_and_move_device_like():
    t = shapes_to_tensor([3, torch.tensor(4)])
    assert t.dtype == torch.int64 and t.tolist() == [3, 4]
    src = torch.ones(2)
    assert move_device_like(src, torch.zeros(1)).device == src.device


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_shapes_to_tensor_while_tracing():
    def f(x):
        return x.new_zeros(()) + shapes_to_tensor(list(x.shape[-2:])).sum()

    traced = torch.jit.trace(f, torch.zeros(2, 3))
    # The sizes stay symbolic in the trace, so another input size gives another sum.
    assert traced(torch.zeros(5, 7)).item() == 12


def test_check_if_dynamo_compiling():
    assert check_if_dynamo_compiling() is False

    def f(x):
        return x + 1 if check_if_dynamo_compiling() else x - 1

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    assert compiled(torch.zeros(1)).item() == 1.0


def test_shape_spec_defaults():
    spec = ShapeSpec(channels=256, stride=8)
    assert (spec.channels, spec.height, spec.width, spec.stride) == (256, None, None, 8)
    assert ShapeSpec() == ShapeSpec(None, None, None, None)
    assert spec == ShapeSpec(256, None, None, 8)

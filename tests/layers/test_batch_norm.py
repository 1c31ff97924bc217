"""Tests for ``torchdet.layers.batch_norm``: FrozenBN, get_norm, NaiveSyncBatchNorm (world size 1
and 2 gloo processes), CycleBatchNormList, channel-first LayerNorm."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdet.layers import (
    CycleBatchNormList,
    FrozenBatchNorm2d,
    LayerNorm,
    NaiveSyncBatchNorm,
    get_norm,
)


def _bn_with_stats(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c) + 0.5)
        bn.bias.copy_(torch.randn(c))
        bn.running_mean.copy_(torch.randn(c))
        bn.running_var.copy_(torch.rand(c) + 0.1)
    bn.num_batches_tracked.fill_(123)
    return bn.eval()


@pytest.mark.parametrize("requires_grad", [False, True])
def test_frozen_bn_equals_bn_in_eval(requires_grad):
    bn = _bn_with_stats(6)
    frozen = FrozenBatchNorm2d(6)
    # A plain dict carries no version metadata (BN's own "version 2" would mean, as in
    # Detectron2, an old FrozenBN checkpoint with eps folded into running_var).
    frozen.load_state_dict(dict(bn.state_dict()))
    x = torch.randn(2, 6, 5, 7, requires_grad=requires_grad)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-5)
    if requires_grad:
        frozen(x).sum().backward()
        # d/dx of x * w / sqrt(var + eps) + ... is w / sqrt(var + eps) per channel.
        expected = (bn.weight / torch.sqrt(bn.running_var + 1e-5)).detach()
        torch.testing.assert_close(x.grad, expected[None, :, None, None].expand_as(x))


def test_frozen_bn_has_no_parameters_and_default_identity():
    frozen = FrozenBatchNorm2d(3)
    assert list(frozen.parameters()) == []
    assert sorted(dict(frozen.named_buffers())) == ["bias", "running_mean", "running_var", "weight"]
    x = torch.randn(1, 3, 2, 2)
    torch.testing.assert_close(frozen(x), x)
    assert repr(frozen) == "FrozenBatchNorm2d(num_features=3, eps=1e-05)"


def test_frozen_bn_drops_num_batches_tracked_silently():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4))
    src = nn.Sequential(nn.Conv2d(3, 4, 1), _bn_with_stats(4)).state_dict()
    assert "1.num_batches_tracked" in src
    result = model.load_state_dict(src, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(model[1].running_var, src["1.running_var"])
    # The caller's dict is left alone.
    assert "1.num_batches_tracked" in src


def test_frozen_bn_loads_old_checkpoints():
    frozen = FrozenBatchNorm2d(2)
    # Version 1 (or no version): no running statistics stored; they default to identity.
    sd = {"weight": torch.tensor([2.0, 3.0]), "bias": torch.tensor([1.0, -1.0])}
    frozen.load_state_dict(sd, strict=True)
    torch.testing.assert_close(frozen.running_mean, torch.zeros(2))
    torch.testing.assert_close(frozen.running_var, torch.ones(2))
    # Version 2 stored running_var with eps folded in.
    v2 = OrderedDict(
        weight=torch.ones(2),
        bias=torch.zeros(2),
        running_mean=torch.zeros(2),
        running_var=torch.tensor([1.0, 4.0]),
    )
    v2._metadata = {"": {"version": 2}}
    frozen.load_state_dict(v2)
    torch.testing.assert_close(frozen.running_var, torch.tensor([1.0, 4.0]) - 1e-5)
    torch.testing.assert_close(v2["running_var"], torch.tensor([1.0, 4.0]))  # not mutated


def test_convert_frozen_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), _bn_with_stats(4), nn.Sequential(_bn_with_stats(4)))
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    converted = FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    assert converted is model
    assert isinstance(model[1], FrozenBatchNorm2d) and isinstance(model[2][0], FrozenBatchNorm2d)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    # A BN layer itself is replaced by a new module.
    single = FrozenBatchNorm2d.convert_frozen_batchnorm(nn.SyncBatchNorm(5, eps=1e-3))
    assert isinstance(single, FrozenBatchNorm2d) and single.eps == 1e-3
    # And back.
    back = FrozenBatchNorm2d.convert_frozenbatchnorm2d_to_batchnorm2d(model)
    assert isinstance(back[1], nn.BatchNorm2d)
    torch.testing.assert_close(back.eval()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("BN", nn.BatchNorm2d),
        ("SyncBN", nn.SyncBatchNorm),
        ("FrozenBN", FrozenBatchNorm2d),
        ("GN", nn.GroupNorm),
        ("nnSyncBN", nn.SyncBatchNorm),
        ("naiveSyncBN", NaiveSyncBatchNorm),
        ("naiveSyncBN_N", NaiveSyncBatchNorm),
        ("LN", LayerNorm),
    ],
)
def test_get_norm_strings(name, cls):
    norm = get_norm(name, 64)
    assert type(norm) is cls
    if name == "GN":
        assert norm.num_groups == 32 and norm.num_channels == 64
    elif name == "LN":
        assert norm.normalized_shape == (64,)
    else:
        assert norm.num_features == 64
    if name == "naiveSyncBN_N":
        assert norm._stats_mode == "N"


def test_get_norm_empty_callable_and_unknown():
    assert get_norm("", 8) is None
    assert get_norm(None, 8) is None
    norm = get_norm(lambda c: nn.GroupNorm(2, c), 8)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 2
    with pytest.raises(KeyError, match="'BatchNorm'.*valid choices.*'FrozenBN'.*'GN'"):
        get_norm("BatchNorm", 8)
    with pytest.raises(TypeError, match="norm must be a str"):
        get_norm(3, 8)


def test_naive_sync_bn_world_size_one_is_batchnorm():
    torch.manual_seed(0)
    naive, ref = NaiveSyncBatchNorm(4), nn.BatchNorm2d(4)
    x = torch.randn(3, 4, 5, 5) * 3 + 1
    torch.testing.assert_close(naive.train()(x), ref.train()(x))
    torch.testing.assert_close(naive.running_mean, ref.running_mean)
    torch.testing.assert_close(naive.running_var, ref.running_var)
    with pytest.raises(ValueError, match="stats_mode"):
        NaiveSyncBatchNorm(4, stats_mode="M")


# Run in fresh interpreters (not fork: a parent that already ran autograd on several threads
# cannot fork safely, and the test module is not importable by name from a spawned process).
_WORKER = """
import sys
import torch
import torch.distributed as dist
from torchdet.layers import NaiveSyncBatchNorm

rank, init_file, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
torch.manual_seed(0)
batch_sizes = (2, 2) if mode == "" else (1, 3)
data = torch.randn(sum(batch_sizes), 3, 4, 4) * 2 + 0.5
start = sum(batch_sizes[:rank])
x = data[start : start + batch_sizes[rank]].clone().requires_grad_(True)
bn = NaiveSyncBatchNorm(3, stats_mode=mode).train()
y = bn(x)
(y * torch.arange(y.numel()).reshape(y.shape)).sum().backward()
torch.save({"out": y.detach(), "grad": x.grad, "mean": bn.running_mean, "var": bn.running_var}, out)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("mode", ["", "N"])
def test_naive_sync_bn_two_gloo_processes_equal_full_batch_bn(mode):
    repo = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    str(r),
                    init_file,
                    mode,
                    os.path.join(tmp, f"{r}.pt"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for r in range(2)
        ]
        for p in procs:
            output, _ = p.communicate(timeout=120)
            assert p.returncode == 0, output.decode(errors="replace")
        parts = [torch.load(os.path.join(tmp, f"{r}.pt")) for r in range(2)]
    torch.manual_seed(0)
    batch_sizes = (2, 2) if mode == "" else (1, 3)
    data = (torch.randn(sum(batch_sizes), 3, 4, 4) * 2 + 0.5).requires_grad_(True)
    ref = nn.BatchNorm2d(3).train()
    out = ref(data)
    weights = torch.cat([torch.arange(b * 3 * 16).reshape(b, 3, 4, 4) for b in batch_sizes])
    (out * weights.to(out.dtype)).sum().backward()
    torch.testing.assert_close(
        torch.cat([p["out"] for p in parts]), out.detach(), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        torch.cat([p["grad"] for p in parts]), data.grad, atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(parts[0]["mean"], ref.running_mean)
    # BatchNorm2d keeps the unbiased variance in running_var; NaiveSyncBatchNorm the biased one.
    n = data.numel() // 3
    torch.testing.assert_close(
        parts[0]["var"], 0.9 + (ref.running_var - 0.9) * (n - 1) / n, atol=1e-5, rtol=1e-5
    )


def test_cycle_batch_norm_list_cycles_statistics():
    cycle = CycleBatchNormList(2, num_features=3).train()
    assert cycle.weight.shape == (3,) and not cycle[0].affine
    a = torch.randn(4, 3, 2, 2) + 5
    b = torch.randn(4, 3, 2, 2) - 5
    cycle(a)
    cycle(b)
    torch.testing.assert_close(cycle[0].running_mean, 0.1 * a.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(cycle[1].running_mean, 0.1 * b.mean(dim=(0, 2, 3)))
    with torch.no_grad():
        cycle.weight.fill_(2.0)
        cycle.bias.fill_(1.0)
    out = cycle(a)  # third call: back to the first layer
    expected = 2.0 * F.batch_norm(a, None, None, training=True) + 1.0
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_layer_norm_normalizes_channels():
    ln = LayerNorm(5)
    with torch.no_grad():
        ln.weight.copy_(torch.rand(5))
        ln.bias.copy_(torch.randn(5))
    x = torch.randn(2, 5, 3, 4)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (5,), ln.weight, ln.bias, eps=1e-6)
    torch.testing.assert_close(ln(x), expected.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)

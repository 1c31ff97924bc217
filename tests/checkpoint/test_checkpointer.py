"""Checkpointer: atomic saves, resume, periodic files, mismatch reports, safe loading."""

from __future__ import annotations

import argparse
import logging
import os

import pytest
import torch
from torch import nn

from torchdet.checkpoint import (
    Checkpointer,
    IncompatibleCheckpointError,
    PeriodicCheckpointer,
    UnsafeCheckpointError,
)
from torchdet.checkpoint import checkpointer as checkpointer_module
from torchdet.layers import FrozenBatchNorm2d


class Tiny(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return model


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _table_rows(text: str) -> list[list[str]]:
    """Data rows of the pipe tables in ``text``, as lists of stripped cells."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|:- "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_save_load_roundtrip_with_checkpointables(tmp_path):
    model = _randomize(Tiny(), 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    opt.step()
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt)
    ckpt.save("model_0000009", iteration=9)

    assert (tmp_path / "model_0000009.pth").is_file()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    saved = torch.load(tmp_path / "model_0000009.pth", weights_only=True)
    assert set(saved) == {"model", "optimizer", "iteration"}

    model2 = _randomize(Tiny(), 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.5, momentum=0.9)
    extra = Checkpointer(model2, str(tmp_path), optimizer=opt2).load(
        str(tmp_path / "model_0000009.pth")
    )
    assert extra == {"iteration": 9}
    _assert_same_state(model, model2)
    assert opt2.param_groups[0]["lr"] == 0.1
    momentum = opt2.state_dict()["state"][4]["momentum_buffer"]  # fc.weight is parameter 4
    assert torch.equal(momentum, torch.ones(3, 4))


def test_save_disabled_without_dir_or_disk(tmp_path):
    Checkpointer(Tiny(), "").save("x")
    Checkpointer(Tiny(), str(tmp_path), save_to_disk=False).save("x")
    assert os.listdir(tmp_path) == []


def test_save_is_atomic_when_write_crashes(tmp_path, monkeypatch):
    model = _randomize(Tiny(), 1)
    ckpt = Checkpointer(model, str(tmp_path))
    ckpt.save("model_a")
    good_bytes = (tmp_path / "model_a.pth").read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpointer_module.torch, "save", crashing_save)
    _randomize(model, 2)
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("model_b")
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("model_a")  # overwriting an existing checkpoint must not truncate it either
    monkeypatch.setattr(checkpointer_module.torch, "save", real_save)

    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_a.pth"]  # no temp file
    assert (tmp_path / "model_a.pth").read_bytes() == good_bytes
    assert (tmp_path / "last_checkpoint").read_text() == "model_a.pth"


def test_last_checkpoint_untouched_when_tag_write_crashes(tmp_path, monkeypatch):
    ckpt = Checkpointer(Tiny(), str(tmp_path))
    ckpt.save("model_a")
    real_atomic_write = checkpointer_module.atomic_write

    def crash_on_tag(path, write):
        def write_then_fail(f):
            write(f)
            raise OSError("I/O error")

        is_tag = path.endswith("last_checkpoint")
        return real_atomic_write(path, write_then_fail if is_tag else write)

    monkeypatch.setattr(checkpointer_module, "atomic_write", crash_on_tag)
    with pytest.raises(OSError, match="I/O error"):
        ckpt.save("model_b")
    monkeypatch.setattr(checkpointer_module, "atomic_write", real_atomic_write)
    # the new checkpoint is complete, but last_checkpoint still names the old one
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_a.pth", "model_b.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_a.pth"


def test_checkpoint_discovery(tmp_path):
    ckpt = Checkpointer(Tiny(), str(tmp_path))
    assert not ckpt.has_checkpoint()
    assert ckpt.get_checkpoint_file() == ""
    assert ckpt.get_all_checkpoint_files() == []
    ckpt.save("model_0000001")
    ckpt.save("model_0000000")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert ckpt.has_checkpoint()
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000000.pth")
    assert ckpt.get_all_checkpoint_files() == [
        str(tmp_path / "model_0000000.pth"),
        str(tmp_path / "model_0000001.pth"),
    ]


def test_resume_or_load(tmp_path):
    out = tmp_path / "out"
    trained = _randomize(Tiny(), 1)
    opt = torch.optim.SGD(trained.parameters(), lr=0.25)
    Checkpointer(trained, str(out), optimizer=opt).save("model_0000004", iteration=4)
    weights_only = _randomize(Tiny(), 3)
    torch.save({"model": weights_only.state_dict()}, tmp_path / "init.pth")

    # resume=True and a checkpoint in save_dir: resume everything from it
    m, o = Tiny(), torch.optim.SGD(Tiny().parameters(), lr=1.0)
    o = torch.optim.SGD(m.parameters(), lr=1.0)
    extra = Checkpointer(m, str(out), optimizer=o).resume_or_load(str(tmp_path / "init.pth"))
    assert extra == {"iteration": 4}
    _assert_same_state(m, trained)
    assert o.param_groups[0]["lr"] == 0.25

    # resume=False: only the given weights, checkpointables untouched
    m, o = Tiny(), None
    o = torch.optim.SGD(m.parameters(), lr=1.0)
    extra = Checkpointer(m, str(out), optimizer=o).resume_or_load(
        str(tmp_path / "init.pth"), resume=False
    )
    assert extra == {}
    _assert_same_state(m, weights_only)
    assert o.param_groups[0]["lr"] == 1.0

    # resume=True without a checkpoint falls back to the path; an empty path loads nothing
    m = Tiny()
    Checkpointer(m, str(tmp_path / "empty")).resume_or_load(str(tmp_path / "init.pth"))
    _assert_same_state(m, weights_only)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert Checkpointer(m, str(tmp_path / "empty")).resume_or_load("") == {}
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_load_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(Tiny()).load(str(tmp_path / "nope.pth"))


def test_periodic_checkpointer_names_and_max_to_keep(tmp_path):
    ckpt = Checkpointer(Tiny(), str(tmp_path))
    periodic = PeriodicCheckpointer(ckpt, period=3, max_iter=10, max_to_keep=2)
    for it in range(10):
        periodic.step(it, epoch=0)
    # saved at 2, 5, 8 (+ final at 9); 0000002 dropped by max_to_keep=2
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000005.pth",
        "model_0000008.pth",
        "model_final.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 9 and final["epoch"] == 0
    assert torch.load(tmp_path / "model_0000005.pth", weights_only=True)["iteration"] == 5

    periodic.save("model_custom", iteration=11)
    assert (tmp_path / "model_custom.pth").is_file()


def test_periodic_checkpointer_prefix_and_no_limit(tmp_path):
    ckpt = Checkpointer(Tiny(), str(tmp_path))
    periodic = PeriodicCheckpointer(ckpt, period=2, file_prefix="net")
    for it in range(5):
        periodic.step(it)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "net_0000001.pth", "net_0000003.pth"]
    with pytest.raises(ValueError, match="period"):
        PeriodicCheckpointer(ckpt, period=0)


def _mismatched_checkpoint(tmp_path) -> tuple[str, nn.Module]:
    source = _randomize(Tiny(num_classes=5), 7)
    sd = source.state_dict()
    del sd["conv.bias"]
    sd["extra.weight"] = torch.ones(2, 2)
    path = str(tmp_path / "mismatch.pth")
    torch.save({"model": sd}, path)
    return path, source


def test_mismatch_table_lists_missing_unexpected_and_shapes(tmp_path, caplog):
    path, source = _mismatched_checkpoint(tmp_path)
    model = _randomize(Tiny(num_classes=3), 0)
    fc_before = model.fc.weight.clone()
    conv_bias_before = model.conv.bias.clone()
    with caplog.at_level(logging.WARNING, logger="torchdet.checkpoint"):
        Checkpointer(model).load(path)
    rows = _table_rows(caplog.text)
    assert ["shape mismatch (skipped)", "fc.weight", "(5, 4)", "(3, 4)"] in rows
    assert ["shape mismatch (skipped)", "fc.bias", "(5,)", "(3,)"] in rows
    assert ["missing in checkpoint", "conv.bias", "-", "(4,)"] in rows
    assert ["unexpected in checkpoint", "extra.weight", "(2, 2)", "-"] in rows
    assert len(rows) == 1 + 4  # header + the four problems
    # matching entries loaded, the rest kept
    assert torch.equal(model.conv.weight, source.conv.weight)
    assert torch.equal(model.bn.running_var, source.bn.running_var)
    assert torch.equal(model.fc.weight, fc_before)
    assert torch.equal(model.conv.bias, conv_bias_before)


def test_strict_raises_with_the_lists_and_leaves_model_unchanged(tmp_path):
    path, _ = _mismatched_checkpoint(tmp_path)
    model = _randomize(Tiny(num_classes=3), 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(IncompatibleCheckpointError) as info:
        Checkpointer(model).load(path, strict=True)
    msg = str(info.value)
    assert "1 missing, 1 unexpected, 2 with another shape" in msg
    rows = _table_rows(msg)
    assert ["missing in checkpoint", "conv.bias", "-", "(4,)"] in rows
    assert ["unexpected in checkpoint", "extra.weight", "(2, 2)", "-"] in rows
    assert ["shape mismatch (skipped)", "fc.weight", "(5, 4)", "(3, 4)"] in rows
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    # the attribute form; a clean checkpoint passes strict
    ok = str(tmp_path / "ok.pth")
    torch.save({"model": _randomize(Tiny(), 5).state_dict()}, ok)
    ckpt = Checkpointer(model)
    ckpt.strict = True
    ckpt.load(ok)
    with pytest.raises(IncompatibleCheckpointError):
        ckpt.load(path)


class _FrozenLike(nn.Module):
    """A norm with BN's statistics as buffers but no ``num_batches_tracked``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        for name, init in (("weight", 1), ("bias", 0), ("running_mean", 0), ("running_var", 1)):
            self.register_buffer(name, torch.full((n,), float(init)))


@pytest.mark.parametrize("norm", [_FrozenLike, FrozenBatchNorm2d], ids=["local", "layers"])
def test_num_batches_tracked_dropped_silently(tmp_path, caplog, norm):
    trained = _randomize(Tiny(), 3)
    trained.bn.num_batches_tracked.fill_(1200)
    path = str(tmp_path / "bn.pth")
    # a plain dict: no module version metadata (FrozenBN treats BN's version 2 as eps-folded)
    torch.save({"model": dict(trained.state_dict())}, path)

    model = Tiny()
    model.bn = norm(4)
    assert "bn.num_batches_tracked" not in model.state_dict()
    with caplog.at_level(logging.INFO, logger="torchdet.checkpoint"):
        Checkpointer(model).load(path, strict=True)
    assert not [r for r in caplog.records if "bn.num_batches_tracked" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for k in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(model.bn, k), getattr(trained.bn, k)), k


def test_ddp_prefix_and_wrapper(tmp_path):
    trained = _randomize(Tiny(), 4)
    path = str(tmp_path / "ddp.pth")
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)
    model = Tiny()
    Checkpointer(model).load(path, strict=True)
    _assert_same_state(model, trained)

    wrapped = nn.DataParallel(Tiny())
    ckpt = Checkpointer(wrapped, str(tmp_path / "o"))
    assert ckpt.model is wrapped.module
    ckpt.save("m")
    assert "conv.weight" in torch.load(tmp_path / "o" / "m.pth", weights_only=True)["model"]


def test_unsafe_pickle_refused_unless_opted_in(tmp_path):
    trained = _randomize(Tiny(), 4)
    path = str(tmp_path / "unsafe.pth")
    torch.save({"model": trained.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    model = Tiny()
    with pytest.raises(UnsafeCheckpointError) as info:
        Checkpointer(model).load(path)
    msg = str(info.value)
    assert "argparse.Namespace" in msg and "allow_unsafe=True" in msg and path in msg

    extra = Checkpointer(model).load(path, allow_unsafe=True)
    assert extra == {"args": argparse.Namespace(lr=0.1)}
    _assert_same_state(model, trained)


def test_numpy_entries_load_safely(tmp_path):
    trained = _randomize(Tiny(), 4)
    path = str(tmp_path / "np.pth")
    import numpy as np

    sd = {k: v.numpy() for k, v in trained.state_dict().items()}
    torch.save({"model": sd, "iteration": np.int64(7)}, path)
    model = Tiny()
    extra = Checkpointer(model).load(path, strict=True)
    _assert_same_state(model, trained)
    assert extra == {"iteration": 7}


def test_add_checkpointable_validation():
    ckpt = Checkpointer(Tiny())
    with pytest.raises(TypeError, match="state_dict"):
        ckpt.add_checkpointable("thing", object())
    with pytest.raises(KeyError, match="model"):
        ckpt.add_checkpointable("model", Tiny())
    with pytest.raises(TypeError, match="nn.Module"):
        Checkpointer("not a model")

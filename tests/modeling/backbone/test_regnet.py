"""RegNet: reference parity (X and Y with SE), the width/depth generator, freezing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.layers import FrozenBatchNorm2d
from torchdet.modeling.backbone import RegNet
from torchdet.modeling.backbone.regnet import (
    ResBasicBlock,
    ResBottleneckBlock,
    ResStem,
    SimpleStem,
    VanillaBlock,
    adjust_block_compatibility,
    generate_regnet_parameters,
)


def _fixture():
    name = "torchdet_tests_backbone_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_fixture.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("case", ["regnetx", "regnety"])
def test_reference_parity(parity_dir, case):
    errors = _fixture().check_parity(_fixture().load_case(parity_dir, case))
    assert max(errors.values()) <= 1e-4, errors


def test_generate_regnet_parameters_hand_computed():
    # d=8, w_0=16, w_a=12, w_m=2: continuous widths 16, 28, 40, ..., 100;
    # k = round(log2(w / 16)): log2 of 1, 1.75, 2.5, 3.25, 4, 4.75, 5.5, 6.25 is
    # 0, 0.81, 1.32, 1.70, 2, 2.25, 2.46, 2.64 -> k = 0, 1, 1, 2, 2, 2, 2, 3.
    ws, ds, num_stages, total_stages, ws_all, ws_cont = generate_regnet_parameters(12.0, 16, 2.0, 8)
    assert ws == [16, 32, 64, 128]
    assert ds == [1, 2, 4, 1]
    assert num_stages == 4 and total_stages == 4
    assert ws_all == [16, 32, 32, 64, 64, 64, 64, 128]
    assert ws_cont == [16.0, 28.0, 40.0, 52.0, 64.0, 76.0, 88.0, 100.0]


def test_generate_regnet_parameters_rejects_bad_values():
    with pytest.raises(ValueError, match="w_0 % q"):
        generate_regnet_parameters(12.0, 12, 2.0, 8)
    with pytest.raises(ValueError, match="w_m"):
        generate_regnet_parameters(12.0, 16, 1.0, 8)


def test_adjust_block_compatibility():
    # Bottleneck width 24*1 with group width 16 rounds to a multiple of 16: round(24/16)*16 = 32.
    assert adjust_block_compatibility([24, 48], [1.0, 1.0], [16, 16]) == (
        [32, 48],
        [1.0, 1.0],
        [16, 16],
    )
    # Group width is capped by the bottleneck width.
    assert adjust_block_compatibility([8], [1.0], [16]) == ([8], [1.0], [8])


def _tiny(**kwargs) -> RegNet:
    args = dict(
        stem_class=SimpleStem,
        stem_width=8,
        block_class=ResBottleneckBlock,
        depth=3,
        w_a=8.0,
        w_0=8,
        w_m=2.0,
        group_width=4,
        out_features=["stem", "s1", "s2"],
    )
    args.update(kwargs)
    return RegNet(**args)


def test_output_strides_and_channels_follow_the_stages():
    model = _tiny()
    # d=3: continuous widths 8, 16, 24 -> k = 0, 1, round(log2 3) = 2 -> widths 8, 16, 32.
    shapes = {k: (v.channels, v.stride) for k, v in model.output_shape().items()}
    assert shapes == {"stem": (8, 2), "s1": (8, 4), "s2": (16, 8)}
    out = model(torch.randn(2, 3, 32, 48))
    assert out["s2"].shape == (2, 16, 4, 6)
    assert out["stem"].shape == (2, 8, 16, 24)


@pytest.mark.parametrize("block", [VanillaBlock, ResBasicBlock, ResBottleneckBlock])
@pytest.mark.parametrize("stem", [SimpleStem, ResStem])
def test_every_block_and_stem_trains(block, stem):
    model = _tiny(block_class=block, stem_class=stem, se_ratio=0.25, out_features=["s3"])
    out = model(torch.randn(2, 3, 32, 32))["s3"]
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_freeze_at_freezes_stem_and_first_stage():
    model = _tiny(freeze_at=2)
    assert isinstance(model.stem.bn, FrozenBatchNorm2d)
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(not p.requires_grad for p in model.s1.parameters())
    assert all(p.requires_grad for p in model.s2.parameters())


def test_bad_input():
    with pytest.raises(KeyError, match="s9"):
        _tiny(out_features=["s9"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        _tiny()(torch.randn(3, 32, 32))

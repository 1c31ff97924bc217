"""MViTv2: reference parity, stage layout and training."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.modeling.backbone import MViT


def _fixture():
    name = "torchdet_tests_backbone_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_fixture.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_reference_parity(parity_dir):
    errors = _fixture().check_parity(_fixture().load_case(parity_dir, "mvitv2"))
    assert max(errors.values()) <= 1e-4, errors


def test_stage_layout_and_gradients():
    model = MViT(
        img_size=64,
        embed_dim=16,
        depth=5,
        num_heads=1,
        last_block_indexes=(0, 2, 3, 4),
        adaptive_window_size=8,
        drop_path_rate=0.1,
        use_abs_pos=True,
        out_features=("scale3", "scale5"),
    )
    # Width and heads double per stage; the first block of a stage pools queries by 2.
    assert {k: (v.channels, v.stride) for k, v in model.output_shape().items()} == {
        "scale3": (32, 8),
        "scale5": (128, 32),
    }
    assert model.blocks[1].attn.pool_q.stride == (2, 2)
    assert model.blocks[2].attn.pool_q.stride == (1, 1)
    assert model.blocks[0].attn.pool_k.stride == (4, 4)
    assert model.blocks[2].attn.window_size == 0  # global attention at the end of stage 3
    out = model(torch.randn(1, 3, 64, 96))
    assert out["scale3"].shape == (1, 32, 8, 12)
    assert out["scale5"].shape == (1, 128, 2, 3)
    (out["scale3"].sum() + out["scale5"].sum()).backward()
    for name, p in model.named_parameters():
        if name.startswith(("scale2_norm", "scale4_norm")):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_input():
    with pytest.raises(KeyError, match="scale7"):
        MViT(
            img_size=64,
            embed_dim=8,
            depth=4,
            last_block_indexes=(0, 1, 2, 3),
            out_features=("scale7",),
        )
    with pytest.raises(ValueError, match="4 stages"):
        MViT(img_size=64, embed_dim=8, depth=3, last_block_indexes=(0, 1, 2))

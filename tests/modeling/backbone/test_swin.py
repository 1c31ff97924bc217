"""Swin Transformer: reference parity, shifted-window mask, odd sizes and training."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.modeling.backbone import SwinTransformer
from torchdet.modeling.backbone.swin import BasicLayer, WindowAttention


def _fixture():
    name = "torchdet_tests_backbone_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_fixture.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_reference_parity(parity_dir):
    errors = _fixture().check_parity(_fixture().load_case(parity_dir, "swin"))
    assert max(errors.values()) <= 1e-4, errors


def test_relative_position_index_hand_computed():
    attn = WindowAttention(4, (2, 2), num_heads=1)
    # Positions (0,0), (0,1), (1,0), (1,1); index = (dy + 1) * 3 + (dx + 1).
    assert attn.relative_position_index.tolist() == [
        [4, 3, 1, 0],
        [5, 4, 2, 1],
        [7, 6, 4, 3],
        [8, 7, 5, 4],
    ]


def test_shift_mask_separates_wrapped_regions():
    layer = BasicLayer(dim=4, depth=2, num_heads=1, window_size=2)
    mask = layer._shift_mask(4, 4, torch.zeros(1))
    assert mask.shape == (4, 4, 4)
    # Window 0 (top-left) holds no wrapped tokens; the bottom-right window mixes 4 regions.
    assert (mask[0] == 0).all()
    expected = torch.full((4, 4), -100.0)
    expected.fill_diagonal_(0.0)
    torch.testing.assert_close(mask[3], expected)


def test_odd_sizes_and_gradients():
    model = SwinTransformer(
        embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=3, out_indices=(0, 1)
    )
    assert model.size_divisibility == 32
    out = model(torch.randn(2, 3, 30, 42))  # patches 8 x 11, odd after merging
    assert out["p0"].shape == (2, 8, 8, 11)
    assert out["p1"].shape == (2, 16, 4, 6)
    (out["p0"].sum() + out["p1"].sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_frozen_stages():
    model = SwinTransformer(
        embed_dim=8,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=2,
        frozen_stages=2,
        out_indices=(0, 1),
    )
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert all(p.requires_grad for p in model.layers[1].parameters())


def test_bad_input():
    with pytest.raises(ValueError, match="out_indices"):
        SwinTransformer(embed_dim=8, depths=(2,), num_heads=(1,), out_indices=(1,))
    with pytest.raises(ValueError, match="differ"):
        SwinTransformer(embed_dim=8, depths=(2, 2), num_heads=(1,))

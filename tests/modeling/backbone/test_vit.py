"""ViT + SimpleFeaturePyramid: reference parity, relative positions, windows, LR decay."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torchdet.modeling.backbone import SimpleFeaturePyramid, ViT, get_vit_lr_decay_rate
from torchdet.modeling.backbone.fpn import LastLevelMaxPool
from torchdet.modeling.backbone.utils import (
    get_abs_pos,
    get_rel_pos,
    window_partition,
    window_unpartition,
)


def _fixture():
    name = "torchdet_tests_backbone_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_fixture.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_reference_parity(parity_dir):
    errors = _fixture().check_parity(_fixture().load_case(parity_dir, "vit_sfp"))
    assert max(errors.values()) <= 1e-4, errors


def test_get_rel_pos_same_size_indexes_by_offset():
    # Table row r holds the value r; pair (i, j) reads row (i - j) + (k - 1).
    table = torch.arange(5, dtype=torch.float32)[:, None]
    rel = get_rel_pos(3, 3, table)[..., 0]
    assert rel.tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]


def test_get_rel_pos_interpolates_and_scales_coordinates():
    # A 3-entry linear table 0, 1, 2 resized to 2*4-1 = 7 entries (linear, align_corners=False):
    # sample positions (i + 0.5) * 3/7 - 0.5 clamped to [0, 2].
    table = torch.tensor([[0.0], [1.0], [2.0]])
    rel = get_rel_pos(4, 4, table)[..., 0]
    pos = ((torch.arange(7) + 0.5) * 3 / 7 - 0.5).clamp(0, 2)
    expected_table = pos
    i = torch.arange(4)[:, None]
    j = torch.arange(4)[None, :]
    torch.testing.assert_close(rel, expected_table[i - j + 3])
    # q_size 2, k_size 4: queries step by 2, offset k - 1 = 3 -> [[3, 2, 1, 0], [5, 4, 3, 2]].
    table7 = torch.arange(7, dtype=torch.float32)[:, None]
    assert get_rel_pos(2, 4, table7)[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 3, 2]]


def test_window_partition_pads_and_round_trips():
    x = torch.arange(2 * 5 * 3 * 2, dtype=torch.float32).view(2, 5, 3, 2)
    windows, pad_hw = window_partition(x, 2)
    assert pad_hw == (6, 4)
    assert windows.shape == (2 * 3 * 2, 2, 2, 2)
    # Second window of image 0 covers rows 0-1, columns 2-3 (column 3 is padding).
    torch.testing.assert_close(windows[1, :, 0], x[0, 0:2, 2])
    assert windows[1, :, 1].abs().sum() == 0
    torch.testing.assert_close(window_unpartition(windows, 2, pad_hw, (5, 3)), x)


def test_get_abs_pos_drops_cls_token_and_resizes():
    pos = torch.randn(1, 1 + 4, 3)
    same = get_abs_pos(pos, True, (2, 2))
    torch.testing.assert_close(same, pos[:, 1:].reshape(1, 2, 2, 3))
    assert get_abs_pos(pos, True, (4, 6)).shape == (1, 4, 6, 3)
    with pytest.raises(ValueError, match="square"):
        get_abs_pos(torch.randn(1, 6, 3), False, (2, 2))


def test_lr_decay_rate_by_layer():
    assert get_vit_lr_decay_rate("backbone.net.pos_embed", 0.5, 2) == 0.5**3
    assert get_vit_lr_decay_rate("backbone.net.patch_embed.proj.weight", 0.5, 2) == 0.5**3
    assert get_vit_lr_decay_rate("backbone.net.blocks.0.attn.qkv.weight", 0.5, 2) == 0.5**2
    assert get_vit_lr_decay_rate("backbone.net.blocks.1.mlp.fc1.bias", 0.5, 2) == 0.5
    assert get_vit_lr_decay_rate("backbone.simfp_2.0.weight", 0.5, 2) == 1.0
    assert get_vit_lr_decay_rate("roi_heads.box_predictor.cls_score.weight", 0.5, 2) == 1.0


def _sfp(**vit_kwargs) -> SimpleFeaturePyramid:
    args = dict(
        img_size=64,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        window_size=2,
        window_block_indexes=[0],
        residual_block_indexes=[1],
        use_rel_pos=True,
        pretrain_img_size=32,
        drop_path_rate=0.1,
    )
    args.update(vit_kwargs)
    return SimpleFeaturePyramid(
        ViT(**args),
        in_feature="last_feat",
        out_channels=16,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        top_block=LastLevelMaxPool(),
        square_pad=64,
    )


def test_feature_pyramid_shapes_padding_and_gradients():
    model = _sfp()
    assert model.padding_constraints == {"size_divisibility": 32, "square_size": 64}
    out = model(torch.randn(2, 3, 64, 48))
    assert {k: tuple(v.shape[2:]) for k, v in out.items()} == {
        "p2": (16, 12),
        "p3": (8, 6),
        "p4": (4, 3),
        "p5": (2, 1),
        "p6": (1, 1),
    }
    sum(v.sum() for v in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_input():
    with pytest.raises(ValueError, match="scale factor 3.0"):
        SimpleFeaturePyramid(
            ViT(img_size=32, depth=1, embed_dim=16, num_heads=2), "last_feat", 8, (3.0,)
        )
    with pytest.raises(KeyError, match="res5"):
        SimpleFeaturePyramid(
            ViT(img_size=32, depth=1, embed_dim=16, num_heads=2), "res5", 8, (1.0,)
        )
    with pytest.raises(ValueError, match="divisible"):
        ViT(img_size=32, depth=1, embed_dim=10, num_heads=3)


def test_lr_decay_through_the_optimizer_param_groups():
    from functools import partial

    from torch import nn

    from torchdet.solver import get_default_optimizer_params

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = _sfp()

    model = Wrapper()
    groups = get_default_optimizer_params(
        model,
        base_lr=1.0,
        lr_factor_func=partial(get_vit_lr_decay_rate, lr_decay_rate=0.5, num_layers=2),
    )
    lr_of = {}
    for group in groups:
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    net = model.backbone.net
    assert lr_of[id(net.pos_embed)] == 0.125
    assert lr_of[id(net.blocks[0].attn.qkv.weight)] == 0.25
    assert lr_of[id(net.blocks[1].mlp.fc2.weight)] == 0.5
    # The residual conv block after block 1 and the pyramid are not decayed.
    assert lr_of[id(net.blocks[1].residual.conv1.weight)] == 1.0
    assert lr_of[id(model.backbone.simfp_2[0].weight)] == 1.0


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, use_rel_pos=True)
    ckpt = ViT(
        img_size=32,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        use_rel_pos=True,
        use_act_checkpoint=True,
    )
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 40)
    plain(x)["last_feat"].square().sum().backward()
    ckpt(x)["last_feat"].square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)

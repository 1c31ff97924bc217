"""Tests of torchdet.modeling.anchor_generator."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.modeling.anchor_generator import (
    DefaultAnchorGenerator,
    RotatedAnchorGenerator,
    build_anchor_generator,
)


@pytest.mark.parametrize("name", ["anchors_fpn_offset0", "anchors_c4_offset05"])
def test_anchors_parity(ops_cases, name):
    case = ops_cases[name]
    gen = DefaultAnchorGenerator(**case["args"])
    features = [torch.zeros(1, 2, *shape) for shape in case["inputs"]["feature_shapes"]]
    out = gen(features)
    assert len(out) == len(case["output"])
    for got, ref in zip(out, case["output"]):
        assert got.tensor.shape == ref.shape
        assert (got.tensor - ref).abs().max() <= 1e-4


def test_cell_anchors_hand_computed():
    gen = DefaultAnchorGenerator(
        sizes=[[32]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[16], offset=0.0
    )
    cell = list(gen.cell_anchors)[0]
    w = math.sqrt(32 * 32 / 0.5)  # ratio = h / w
    expected = torch.tensor(
        [
            [-w / 2, -w / 4, w / 2, w / 4],
            [-16.0, -16.0, 16.0, 16.0],
            [-w / 4, -w / 2, w / 4, w / 2],
        ]
    )
    assert torch.allclose(cell, expected, atol=1e-5)
    assert gen.num_anchors == [3]


def test_grid_order_and_offset():
    # 2 x 3 grid of stride 8, one 8x8 anchor per cell, offset 0.5: centres at 4, 12, 20.
    gen = DefaultAnchorGenerator(sizes=[8], aspect_ratios=[1.0], strides=[8], offset=0.5)
    (anchors,) = gen([torch.zeros(1, 1, 2, 3)])
    centres = (anchors.tensor[:, :2] + anchors.tensor[:, 2:]) / 2
    expected = torch.tensor(
        [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]], dtype=torch.float32
    )
    assert torch.equal(centres, expected)  # row-major: x varies fastest
    assert torch.allclose(anchors.tensor[0], torch.tensor([0.0, 0.0, 8.0, 8.0]))


def test_broadcast_and_errors():
    gen = DefaultAnchorGenerator(sizes=[[32, 64]], aspect_ratios=[1.0], strides=[4, 8, 16])
    assert gen.num_anchors == [2, 2, 2]
    with pytest.raises(ValueError, match="number of input features"):
        DefaultAnchorGenerator(sizes=[[32], [64]], aspect_ratios=[1.0], strides=[4, 8, 16])
    with pytest.raises(ValueError, match="offset"):
        DefaultAnchorGenerator(sizes=[32], aspect_ratios=[1.0], strides=[4], offset=1.0)
    with pytest.raises(ValueError, match="feature maps"):
        gen([torch.zeros(1, 1, 2, 2)])
    # no state: anchors are recomputed from the config, never loaded
    assert gen.state_dict() == {}


def test_rotated_anchor_generator():
    gen = RotatedAnchorGenerator(
        sizes=[[16]], aspect_ratios=[[1.0, 4.0]], strides=[4], angles=[[-90, 0, 90]], offset=0.0
    )
    assert gen.num_anchors == [6] and gen.box_dim == 5
    (anchors,) = gen([torch.zeros(1, 1, 1, 2)])
    t = anchors.tensor
    assert t.shape == (12, 5)
    # cell 0 at (0, 0): ratio 1 -> 16 x 16; ratio 4 -> w 8, h 32
    assert torch.allclose(t[0], torch.tensor([0.0, 0.0, 16.0, 16.0, -90.0]))
    assert torch.allclose(t[5], torch.tensor([0.0, 0.0, 8.0, 32.0, 90.0]))
    # cell 1 shifted by the stride in x only
    assert torch.allclose(t[6], torch.tensor([4.0, 0.0, 16.0, 16.0, -90.0]))


def test_build_from_config():
    cfg = get_cfg()
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64]]
    gen = build_anchor_generator(
        cfg, [ShapeSpec(channels=8, stride=4), ShapeSpec(channels=8, stride=8)]
    )
    assert isinstance(gen, DefaultAnchorGenerator)
    assert gen.strides == [4, 8] and gen.num_anchors == [3, 3]
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "RotatedAnchorGenerator"
    assert isinstance(
        build_anchor_generator(cfg, [ShapeSpec(stride=4), ShapeSpec(stride=8)]),
        RotatedAnchorGenerator,
    )
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "NoSuchGenerator"
    with pytest.raises(KeyError, match="NoSuchGenerator"):
        build_anchor_generator(cfg, [ShapeSpec(stride=4)])

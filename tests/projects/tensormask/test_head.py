"""TensorMask head: output shapes in the natural / aligned / bipyramid settings, the prior
initialisation and the config."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.config import get_cfg
from torchdet.layers import ShapeSpec
from torchdet.projects.tensormask import TensorMaskHead, add_tensormask_config


def _features():
    return [torch.randn(2, 8, 16 // 2**k, 16 // 2**k) for k in range(3)]


@pytest.mark.parametrize("aligned_on", [False, True])
def test_head_shapes_natural_and_aligned(aligned_on):
    shapes = [ShapeSpec(channels=8, stride=8 * 2**k) for k in range(3)]
    head = TensorMaskHead(
        shapes,
        num_classes=3,
        num_convs=1,
        cls_channels=8,
        bbox_channels=8,
        mask_channels=8,
        mask_size=3,
        aligned_on=aligned_on,
    )
    logits, deltas, masks = head(_features())
    assert [t.shape for t in logits] == [(2, 3, 16, 16), (2, 3, 8, 8), (2, 3, 4, 4)]
    assert [t.shape for t in deltas] == [(2, 4, 16, 16), (2, 4, 8, 8), (2, 4, 4, 4)]
    assert [t.shape for t in masks] == [(2, 1, 9, 16, 16), (2, 1, 9, 8, 8), (2, 1, 9, 4, 4)]
    # Prior initialisation: sigmoid(bias) = 0.01 and near-zero weights.
    assert torch.sigmoid(head.cls_score.bias[0]).item() == pytest.approx(0.01, rel=1e-5)
    assert logits[0].mean().item() == pytest.approx(-math.log(99), abs=0.1)


def test_head_bipyramid_mask_sides():
    shapes = [ShapeSpec(channels=8, stride=8 * 2**k) for k in range(3)]
    head = TensorMaskHead(
        shapes,
        num_classes=2,
        num_convs=1,
        cls_channels=8,
        bbox_channels=8,
        mask_channels=8,
        mask_size=2,
        bipyramid_on=True,
    )
    _, _, masks = head(_features())
    assert [head.mask_side(k) for k in range(3)] == [2, 4, 8]
    assert [t.shape for t in masks] == [(2, 1, 4, 16, 16), (2, 1, 16, 8, 8), (2, 1, 64, 4, 4)]
    assert all(torch.isfinite(t).all() for t in masks)
    with pytest.raises(ValueError, match="levels"):
        head(_features()[:2])


def test_config_keys():
    cfg = get_cfg()
    add_tensormask_config(cfg)
    assert cfg.MODEL.TENSOR_MASK.IN_FEATURES == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert cfg.MODEL.TENSOR_MASK.FOCAL_LOSS_GAMMA == 3.0
    assert not cfg.MODEL.TENSOR_MASK.BIPYRAMID_ON

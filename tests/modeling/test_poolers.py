"""Tests of torchdet.modeling.poolers."""

from __future__ import annotations

import pytest
import torch

from torchdet.layers import ROIAlign, ROIAlignRotated, ROIPool
from torchdet.modeling.poolers import (
    ROIPooler,
    assign_boxes_to_levels,
    convert_boxes_to_pooler_format,
)
from torchdet.structures import Boxes, RotatedBoxes


def _square(x0: float, y0: float, size: float) -> list[float]:
    return [x0, y0, x0 + size, y0 + size]


def test_assign_boxes_to_levels_hand_computed():
    # canonical 224 -> level 4; levels 2..5 (P2..P5); result relative to level 2.
    boxes = Boxes(
        torch.tensor(
            [
                _square(0, 0, 224),  # 4
                _square(0, 0, 112),  # 3
                _square(0, 0, 448),  # 5
                _square(0, 0, 10),  # clamped to 2
                _square(0, 0, 1000),  # clamped to 5
                _square(0, 0, 223.0),  # just below 224 -> 3
                [0.0, 0.0, 0.0, 0.0],  # empty box -> 2 (log2 stays finite)
            ]
        )
    )
    levels = assign_boxes_to_levels([boxes], 2, 5, 224, 4)
    assert levels.dtype == torch.int64
    assert levels.tolist() == [2, 1, 3, 0, 3, 1, 0]


def test_convert_boxes_to_pooler_format():
    b0 = Boxes(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]))
    b1 = Boxes(torch.zeros((0, 4)))
    b2 = Boxes(torch.tensor([[9.0, 10.0, 11.0, 12.0]]))
    out = convert_boxes_to_pooler_format([b0, b1, b2])
    assert out.tolist() == [
        [0.0, 1.0, 2.0, 3.0, 4.0],
        [0.0, 5.0, 6.0, 7.0, 8.0],
        [2.0, 9.0, 10.0, 11.0, 12.0],
    ]


@pytest.mark.parametrize("pooler_type", ["ROIAlign", "ROIAlignV2", "ROIPool"])
def test_roi_pooler_multilevel_equals_per_level_pooling(pooler_type):
    torch.manual_seed(1)
    feats = [torch.randn(2, 3, 64 // s, 64 // s) for s in (4, 8, 16, 32)]
    boxes = [
        Boxes(torch.tensor([_square(2, 3, 20), _square(0, 0, 60), _square(10, 4, 40)])),
        Boxes(torch.tensor([_square(5, 5, 30), _square(1, 2, 8)])),
    ]
    pooler = ROIPooler(
        7,
        scales=(1 / 4, 1 / 8, 1 / 16, 1 / 32),
        sampling_ratio=2,
        pooler_type=pooler_type,
        canonical_box_size=32,
        canonical_level=4,
    )
    out = pooler(feats, boxes)
    assert out.shape == (5, 3, 7, 7)
    # sqrt(area) 20, 60, 40, 30, 8 with canonical 32 @ level 4 -> levels 3, 4, 4, 3, 2
    levels = [3, 4, 4, 3, 2]
    rois = convert_boxes_to_pooler_format(boxes)
    for i, level in enumerate(levels):
        scale = 1.0 / 2**level
        if pooler_type == "ROIPool":
            op = ROIPool(7, scale)
        else:
            op = ROIAlign(7, scale, 2, aligned=pooler_type == "ROIAlignV2")
        expected = op(feats[level - 2], rois[i : i + 1])
        assert torch.allclose(out[i], expected[0], atol=1e-6), i


def test_roi_pooler_single_level_rotated_and_empty():
    feat = torch.randn(1, 4, 16, 16)
    boxes = [RotatedBoxes(torch.tensor([[8.0, 8.0, 6.0, 4.0, 30.0]]))]
    pooler = ROIPooler((2, 3), scales=(1.0,), sampling_ratio=0, pooler_type="ROIAlignRotated")
    out = pooler([feat], boxes)
    expected = ROIAlignRotated((2, 3), 1.0, 0)(
        feat, torch.tensor([[0.0, 8.0, 8.0, 6.0, 4.0, 30.0]])
    )
    assert out.shape == (1, 4, 2, 3) and torch.allclose(out, expected)

    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    pooler = ROIPooler(5, scales=(1 / 4, 1 / 8), sampling_ratio=0, pooler_type="ROIAlignV2")
    empty = pooler(feats, [Boxes(torch.zeros(0, 4)), Boxes(torch.zeros(0, 4))])
    assert empty.shape == (0, 4, 5, 5)


def test_roi_pooler_errors():
    with pytest.raises(ValueError, match="Unknown pooler type"):
        ROIPooler(7, (1 / 4,), 0, "ROIMax")
    with pytest.raises(ValueError, match="powers of 2"):
        ROIPooler(7, (1 / 3,), 0, "ROIAlign")
    with pytest.raises(ValueError, match="contiguous"):
        ROIPooler(7, (1 / 4, 1 / 16), 0, "ROIAlign")
    pooler = ROIPooler(7, (1 / 4, 1 / 8), 0, "ROIAlign")
    with pytest.raises(ValueError, match="feature levels"):
        pooler([torch.zeros(1, 1, 4, 4)], [Boxes(torch.zeros(0, 4))])
    with pytest.raises(ValueError, match="box lists"):
        pooler([torch.zeros(1, 1, 4, 4)] * 2, [Boxes(torch.zeros(0, 4))] * 2)

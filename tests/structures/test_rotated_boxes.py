"""Tests for ``torchdet.structures.rotated_boxes``: RotatedBoxes and pairwise_iou_rotated."""

from __future__ import annotations

import math

import pytest
import torch

from torchdet.structures import Boxes, BoxMode, RotatedBoxes, pairwise_iou, pairwise_iou_rotated


def test_parity_with_detectron2(ops_cases):
    case = ops_cases["pairwise_iou_rotated"]
    b1 = RotatedBoxes(case["inputs"]["boxes1"])
    b2 = RotatedBoxes(case["inputs"]["boxes2"])
    out = pairwise_iou_rotated(b1, b2)
    assert out.shape == case["output"].shape
    assert (out - case["output"]).abs().max().item() <= 1e-4


def test_iou_hand_computed():
    boxes = RotatedBoxes(
        torch.tensor(
            [
                [5.0, 5.0, 2.0, 2.0, 0.0],
                [5.0, 5.0, 2.0, 2.0, 45.0],  # 45-degree square: octagon intersection
                [5.0, 5.0, 2.0, 2.0, 90.0],  # same square rotated by 90
                [50.0, 5.0, 2.0, 2.0, 10.0],  # disjoint
            ]
        )
    )
    iou = pairwise_iou_rotated(boxes, boxes)
    torch.testing.assert_close(iou.diagonal(), torch.ones(4))
    assert iou[0, 1].item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert iou[0, 2].item() == pytest.approx(1.0, abs=1e-6)
    assert iou[3, :3].abs().sum().item() == 0


def test_iou_of_axis_aligned_boxes_matches_pairwise_iou():
    g = torch.Generator().manual_seed(0)
    xyxy = torch.rand(20, 4, generator=g) * 50
    xyxy[:, 2:] = xyxy[:, :2] + 1 + torch.rand(20, 2, generator=g) * 30
    rotated = RotatedBoxes(BoxMode.convert(xyxy, BoxMode.XYXY_ABS, BoxMode.XYWHA_ABS))
    expected = pairwise_iou(Boxes(xyxy), Boxes(xyxy))
    assert (expected > 0).float().mean() > 0.2
    torch.testing.assert_close(pairwise_iou_rotated(rotated, rotated), expected, atol=1e-5, rtol=0)


def test_iou_empty_and_wrong_type():
    boxes = RotatedBoxes(torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]]))
    assert pairwise_iou_rotated(RotatedBoxes(torch.zeros(0, 5)), boxes).shape == (0, 1)
    with pytest.raises(TypeError, match="boxes2"):
        pairwise_iou_rotated(boxes, Boxes(torch.zeros(1, 4)))


def test_area_normalize_nonempty_centers():
    b = RotatedBoxes(
        torch.tensor(
            [[1.0, 2.0, 3.0, 4.0, 190.0], [0.0, 0.0, 0.0, 4.0, -180.0], [0, 0, 2.0, 2.0, 540.0]]
        )
    )
    torch.testing.assert_close(b.area(), torch.tensor([12.0, 0.0, 4.0]))
    assert b.nonempty().tolist() == [True, False, True]
    assert b.nonempty(threshold=2.5).tolist() == [True, False, False]
    torch.testing.assert_close(b.get_centers(), b.tensor[:, :2])
    b.normalize_angles()
    torch.testing.assert_close(b.tensor[:, 4], torch.tensor([-170.0, -180.0, -180.0]))
    assert len(b) == 3 and b.device == torch.device("cpu")
    with pytest.raises(ValueError, match=r"Tensor\[N, 5\]"):
        RotatedBoxes(torch.zeros(2, 4))
    assert RotatedBoxes([]).tensor.shape == (0, 5)


def test_clip_only_nearly_horizontal_boxes():
    b = RotatedBoxes(
        torch.tensor(
            [
                [1.0, 5.0, 6.0, 2.0, 0.5],  # sticks out on the left: clipped to x in [0, 4]
                [1.0, 5.0, 6.0, 2.0, 30.0],  # rotated: left unchanged
                [9.0, 9.0, 4.0, 4.0, 360.0],  # angle normalises to 0; clipped to [7, 10]^2
            ]
        )
    )
    before = b.tensor[1].clone()
    b.clip((10, 10))
    torch.testing.assert_close(b.tensor[0], torch.tensor([2.0, 5.0, 4.0, 2.0, 0.5]))
    torch.testing.assert_close(b.tensor[1], before)
    torch.testing.assert_close(b.tensor[2], torch.tensor([8.5, 8.5, 3.0, 3.0, 0.0]))
    b2 = RotatedBoxes(torch.tensor([[1.0, 5.0, 6.0, 2.0, 2.0]]))
    b2.clip((10, 10), clip_angle_threshold=1.0)
    assert b2.tensor[0, 2] == 6.0


def test_inside_box_uses_the_rotated_hull():
    b = RotatedBoxes(torch.tensor([[5.0, 5.0, 8.0, 2.0, 0.0], [5.0, 5.0, 8.0, 2.0, 90.0]]))
    assert b.inside_box((10, 10)).tolist() == [True, True]
    assert b.inside_box((8, 10)).tolist() == [True, False]  # standing up it spans y in [1, 9]
    assert b.inside_box((8, 10), boundary_threshold=2).tolist() == [True, True]


def test_scale():
    b = RotatedBoxes(torch.tensor([[1.0, 1.0, 4.0, 2.0, 0.0], [1.0, 1.0, 4.0, 2.0, 90.0]]))
    b.scale(3.0, 0.5)
    torch.testing.assert_close(
        b.tensor, torch.tensor([[3.0, 0.5, 12.0, 1.0, 0.0], [3.0, 0.5, 2.0, 6.0, 90.0]])
    )
    u = RotatedBoxes(torch.tensor([[1.0, 2.0, 4.0, 2.0, 30.0]]))
    u.scale(2.0, 2.0)
    torch.testing.assert_close(u.tensor, torch.tensor([[2.0, 4.0, 8.0, 4.0, 30.0]]))


def test_indexing_cat_clone_iteration():
    b = RotatedBoxes(torch.arange(15, dtype=torch.float32).view(3, 5))
    assert isinstance(b[0], RotatedBoxes) and b[0].tensor.shape == (1, 5)
    assert b[torch.tensor([True, False, True])].tensor[:, 0].tolist() == [0.0, 10.0]
    cat = RotatedBoxes.cat([b, b[1:]])
    assert isinstance(cat, RotatedBoxes) and len(cat) == 5
    c = b.clone()
    c.tensor += 1
    assert b.tensor[0, 0] == 0
    assert isinstance(b.to("cpu"), RotatedBoxes)
    assert [t.shape for t in b] == [torch.Size([5])] * 3
    assert repr(b).startswith("RotatedBoxes(")

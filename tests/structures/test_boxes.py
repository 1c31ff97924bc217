"""Tests for ``torchdet.structures.boxes``: Boxes, BoxMode and the pairwise overlap functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchdet.structures import (
    Boxes,
    BoxMode,
    matched_pairwise_iou,
    pairwise_intersection,
    pairwise_ioa,
    pairwise_iou,
    pairwise_point_box_distance,
)


@pytest.mark.parametrize(
    "name,fn", [("pairwise_iou", pairwise_iou), ("pairwise_ioa", pairwise_ioa)]
)
def test_parity_with_detectron2(ops_cases, name, fn):
    case = ops_cases[name]
    out = fn(Boxes(case["inputs"]["boxes1"]), Boxes(case["inputs"]["boxes2"]))
    assert out.shape == case["output"].shape
    assert (out - case["output"]).abs().max().item() <= 1e-5
    assert (case["output"] > 0).sum() > 20  # the fixture has real overlaps


def test_pairwise_iou_ioa_intersection_hand_computed():
    a = Boxes(torch.tensor([[0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 11.0, 12.0]]))
    b = Boxes(torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [0.5, 0.5, 1.5, 1.5]]))
    inter = pairwise_intersection(a, b)
    torch.testing.assert_close(inter, torch.tensor([[1.0, 4.0, 1.0], [0.0, 0.0, 0.0]]))
    iou = pairwise_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 1.0, 0.25], [0.0, 0.0, 0.0]]))
    # IoA divides by the area of boxes2
    ioa = pairwise_ioa(a, b)
    torch.testing.assert_close(ioa, torch.tensor([[0.25, 1.0, 1.0], [0.0, 0.0, 0.0]]))


def test_pairwise_empty_and_degenerate():
    empty = Boxes(torch.zeros(0, 4))
    some = Boxes(torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 2.0, 5.0]]))  # 2nd: zero width
    assert pairwise_iou(empty, some).shape == (0, 2)
    assert pairwise_iou(some, empty).shape == (2, 0)
    assert pairwise_ioa(empty, empty).shape == (0, 0)
    iou = pairwise_iou(some, some)
    assert not torch.isnan(iou).any()
    torch.testing.assert_close(iou, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert not torch.isnan(pairwise_ioa(some, some)).any()
    with pytest.raises(TypeError, match="boxes1"):
        pairwise_iou(torch.zeros(2, 4), some)


def test_matched_pairwise_iou_and_point_distance():
    a = Boxes(torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]]))
    b = Boxes(torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]]))
    torch.testing.assert_close(matched_pairwise_iou(a, b), torch.tensor([1 / 7, 1.0]))
    with pytest.raises(ValueError, match="same number"):
        matched_pairwise_iou(a, b[:1])
    points = torch.tensor([[1.0, 0.5], [5.0, 5.0]])
    d = pairwise_point_box_distance(points, Boxes(torch.tensor([[0.0, 0.0, 2.0, 4.0]])))
    assert d.shape == (2, 1, 4)
    torch.testing.assert_close(
        d[:, 0], torch.tensor([[1.0, 0.5, 1.0, 3.5], [5.0, 5.0, -3.0, -1.0]])
    )
    with pytest.raises(ValueError, match="points"):
        pairwise_point_box_distance(torch.zeros(3), a)


def test_boxes_construction_and_basic_methods():
    b = Boxes(torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 1.0, 1.0, 3.0]], dtype=torch.float64))
    assert b.tensor.dtype == torch.float32
    assert len(b) == 2 and b.device == torch.device("cpu")
    torch.testing.assert_close(b.area(), torch.tensor([8.0, 0.0]))
    torch.testing.assert_close(b.get_centers(), torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
    assert b.nonempty().tolist() == [True, False]
    assert b.nonempty(threshold=2.0).tolist() == [False, False]
    assert Boxes([]).tensor.shape == (0, 4)
    assert Boxes(torch.zeros(0)).tensor.shape == (0, 4)
    assert Boxes(np.ones((3, 4))).tensor.shape == (3, 4)
    with pytest.raises(ValueError, match=r"Tensor\[N, 4\]"):
        Boxes(torch.zeros(3, 5))
    assert [t.tolist() for t in b] == b.tensor.tolist()
    assert "Boxes(" in repr(b)

    c = b.clone()
    c.tensor[0, 0] = 100
    assert b.tensor[0, 0] == 0
    assert b.to("cpu").tensor.equal(b.tensor)


def test_boxes_indexing():
    b = Boxes(torch.arange(20, dtype=torch.float32).view(5, 4))
    assert b[1].tensor.shape == (1, 4) and b[1].tensor[0, 0] == 4
    assert len(b[1:3]) == 2
    mask = torch.tensor([True, False, True, False, False])
    assert b[mask].tensor[:, 0].tolist() == [0.0, 8.0]
    assert b[torch.tensor([4, 0])].tensor[:, 0].tolist() == [16.0, 0.0]
    assert len(b[torch.zeros(5, dtype=torch.bool)]) == 0
    with pytest.raises(IndexError):
        b[1, 2]  # a single number is not a list of boxes


def test_boxes_clip_inside_scale_cat():
    b = Boxes(torch.tensor([[-5.0, -2.0, 20.0, 8.0], [1.0, 1.0, 3.0, 3.0]]))
    assert b.inside_box((10, 30)).tolist() == [False, True]
    assert b.inside_box((10, 30), boundary_threshold=5).tolist() == [True, True]
    b.clip((6, 12))  # (height, width)
    torch.testing.assert_close(b.tensor[0], torch.tensor([0.0, 0.0, 12.0, 6.0]))
    b.scale(2.0, 0.5)
    torch.testing.assert_close(b.tensor[1], torch.tensor([2.0, 0.5, 6.0, 1.5]))
    with pytest.raises(ValueError, match="infinite"):
        Boxes(torch.tensor([[0.0, 0.0, float("inf"), 1.0]])).clip((5, 5))

    cat = Boxes.cat([b, Boxes(torch.zeros(0, 4)), b[0]])
    assert len(cat) == 3 and cat.tensor[2].equal(b.tensor[0])
    assert len(Boxes.cat([])) == 0
    with pytest.raises(TypeError, match="element 1"):
        Boxes.cat([b, torch.zeros(1, 4)])


def test_box_mode_convert_xywh_xyxy_containers():
    xywh = [1.0, 2.0, 3.0, 4.0]
    xyxy = [1.0, 2.0, 4.0, 6.0]
    assert BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) == xyxy
    out = BoxMode.convert(tuple(xywh), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert isinstance(out, tuple) and out == tuple(xyxy)
    arr = np.array([xywh, [0.0, 0.0, 1.0, 1.0]])
    out = BoxMode.convert(arr, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [xyxy, [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(arr[0], xywh)  # the input is not modified
    t = torch.tensor([xyxy])
    back = BoxMode.convert(t, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    torch.testing.assert_close(back, torch.tensor([xywh]))
    assert t.tolist() == [xyxy]
    # same mode: returned as is
    assert BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYWH_ABS) is xywh
    # int modes are accepted like the enum
    assert BoxMode.convert(xywh, 1, 0) == xyxy


def test_box_mode_convert_rotated():
    # a 4x2 box rotated by 90 degrees covers 2x4 around its center
    out = BoxMode.convert([5.0, 5.0, 4.0, 2.0, 90.0], BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS)
    np.testing.assert_allclose(out, [4.0, 3.0, 6.0, 7.0], atol=1e-6)
    # at 45 degrees a 2x2 square has a hull of side 2 * sqrt(2)
    out = BoxMode.convert(torch.tensor([[0.0, 0.0, 2.0, 2.0, 45.0]]), 4, 0)
    r = 2**0.5
    torch.testing.assert_close(out, torch.tensor([[-r, -r, r, r]]))
    assert out.dtype == torch.float32

    xyxy = torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 2.0, 3.0, 7.0]])
    xywha = BoxMode.convert(xyxy, BoxMode.XYXY_ABS, BoxMode.XYWHA_ABS)
    torch.testing.assert_close(xywha, torch.tensor([[2.0, 1.0, 4.0, 2.0, 0.0], [2, 4.5, 2, 5, 0]]))
    torch.testing.assert_close(BoxMode.convert(xywha, 4, 0), xyxy)
    xywh = BoxMode.convert(xyxy, 0, 1)
    torch.testing.assert_close(BoxMode.convert(xywh, 1, 4), xywha)


def test_box_mode_convert_errors():
    with pytest.raises(NotImplementedError, match="relative"):
        BoxMode.convert([0, 0, 1, 1], BoxMode.XYXY_REL, BoxMode.XYXY_ABS)
    with pytest.raises(NotImplementedError, match="XYWHA_ABS to XYWH_ABS"):
        BoxMode.convert([0, 0, 1, 1, 0], BoxMode.XYWHA_ABS, BoxMode.XYWH_ABS)
    with pytest.raises(ValueError, match="length 3"):
        BoxMode.convert([0, 0, 1], BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    with pytest.raises(ValueError, match="5 values"):
        BoxMode.convert(torch.zeros(2, 4), BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS)
    with pytest.raises(TypeError, match="dict"):
        BoxMode.convert({"x": 1}, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)

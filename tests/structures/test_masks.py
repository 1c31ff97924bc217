"""Tests for ``torchdet.structures.masks``: BitMasks, PolygonMasks, ROIMasks and helpers."""

from __future__ import annotations

import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from torchdet.structures import (
    BitMasks,
    Boxes,
    PolygonMasks,
    ROIMasks,
    polygon_area,
    polygons_to_bitmask,
    rasterize_polygons_within_box,
)


def _circle(cx: float, cy: float, r: float, n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1).reshape(-1)


SQUARE = np.array([0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0])
TRIANGLE = np.array([20.0, 20.0, 40.0, 20.0, 20.0, 50.0])


def test_polygon_validation_names_the_instance():
    with pytest.raises(ValueError, match="polygon 0 of instance 1 has 4 coordinates"):
        PolygonMasks([[SQUARE], [np.array([0.0, 0.0, 1.0, 1.0])]])
    with pytest.raises(ValueError, match="instance 0 has 7 coordinates"):
        PolygonMasks([[np.arange(7.0)]])
    with pytest.raises(ValueError, match="instance 0 must be a list"):
        PolygonMasks([SQUARE])
    with pytest.raises(ValueError, match="list of lists"):
        PolygonMasks(np.zeros((1, 6)))
    pm = PolygonMasks([[torch.tensor(SQUARE)], [list(TRIANGLE)], []])
    assert all(p.dtype == np.float64 for ps in pm.polygons for p in ps)
    assert len(pm) == 3 and pm.device == torch.device("cpu") and pm.to("cpu") is pm


def test_polygon_area_vs_pycocotools():
    assert polygon_area(SQUARE[0::2], SQUARE[1::2]) == pytest.approx(100.0)
    assert polygon_area(TRIANGLE[0::2], TRIANGLE[1::2]) == pytest.approx(300.0)
    instances = [[SQUARE], [_circle(60, 60, 30)], [SQUARE + 50.0, TRIANGLE]]
    areas = PolygonMasks(instances).area()
    assert areas.dtype == torch.float64
    for polys, area in zip(instances, areas.tolist()):
        rle = mask_util.merge(mask_util.frPyObjects(polys, 100, 100))
        coco = float(mask_util.area(rle))
        assert area == pytest.approx(coco, rel=0.03)
    # an axis-aligned square on integer coordinates rasterises exactly
    assert areas[0].item() == 100.0
    # disjoint parts add up
    assert areas[2].item() == pytest.approx(400.0)
    assert PolygonMasks([[]]).area().tolist() == [0.0]


def test_polygon_bounding_boxes_nonempty_indexing_cat():
    pm = PolygonMasks(
        [[SQUARE + 5.0, TRIANGLE], [np.array([-4.0, -3.0, -1.0, -3.0, -1.0, -2.0])], []]
    )
    boxes = pm.get_bounding_boxes()
    assert isinstance(boxes, Boxes)
    torch.testing.assert_close(boxes.tensor[0], torch.tensor([5.0, 5.0, 40.0, 50.0]))
    # Detectron2 starts the max at 0 and the min at +inf
    torch.testing.assert_close(boxes.tensor[1], torch.tensor([-4.0, -3.0, 0.0, 0.0]))
    assert boxes.tensor[2, :2].isinf().all() and (boxes.tensor[2, 2:] == 0).all()
    assert pm.nonempty().tolist() == [True, True, False]
    assert len(PolygonMasks([]).get_bounding_boxes()) == 0

    assert len(pm[0]) == 1 and len(pm[0].polygons[0]) == 2
    assert len(pm[1:]) == 2
    assert pm[[2, 0]].polygons[1][0][0] == 5.0
    assert len(pm[torch.tensor([True, False, True])]) == 2
    assert pm[torch.tensor([1])].polygons[0][0][0] == -4.0
    with pytest.raises(ValueError, match="dtype"):
        pm[torch.tensor([0.5])]
    cat = PolygonMasks.cat([pm, pm[0]])
    assert len(cat) == 4 and list(iter(cat))[3][0][0] == 5.0
    assert repr(pm) == "PolygonMasks(num_instances=3)"


def test_polygons_to_bitmask_and_rasterize_within_box():
    empty = polygons_to_bitmask([], 5, 6)
    assert empty.shape == (5, 6) and empty.dtype == bool and not empty.any()
    left_half = np.array([0.0, 0.0, 4.0, 0.0, 4.0, 8.0, 0.0, 8.0])
    m = polygons_to_bitmask([left_half], 8, 8)
    assert m[:, :4].all() and not m[:, 4:].any()
    # within box (0, 0, 8, 8) at size 4 the polygon is scaled by 1/2: left two columns
    r = rasterize_polygons_within_box([left_half], np.array([0.0, 0.0, 8.0, 8.0]), 4)
    assert r.dtype == torch.bool and r.shape == (4, 4)
    assert r[:, :2].all() and not r[:, 2:].any()
    # a box over the polygon's right half: the mask is full; the input is not modified
    r = rasterize_polygons_within_box([left_half], np.array([2.0, 0.0, 4.0, 8.0]), 4)
    assert r.all()
    assert left_half[0] == 0.0 and left_half[2] == 4.0


def test_polygon_crop_and_resize():
    pm = PolygonMasks([[np.array([0.0, 0.0, 4.0, 0.0, 4.0, 8.0, 0.0, 8.0])], [SQUARE]])
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 20.0, 10.0]])
    out = pm.crop_and_resize(boxes, 4)
    assert out.shape == (2, 4, 4) and out.dtype == torch.bool
    assert out[0, :, :2].all() and not out[0, :, 2:].any()
    assert out[1, :, :2].all() and not out[1, :, 2:].any()
    assert pm[[]].crop_and_resize(torch.zeros(0, 4), 7).shape == (0, 7, 7)
    with pytest.raises(ValueError, match="1 boxes for 2"):
        pm.crop_and_resize(boxes[:1], 4)


def _hand_mask() -> torch.Tensor:
    m = torch.zeros(3, 8, 8, dtype=torch.bool)
    m[0, 0:4, 2:6] = True  # rows 0-3, columns 2-5
    m[1, 5, 7] = True  # a single pixel in the corner
    return m  # instance 2 is empty


def test_bitmasks_basic():
    bm = BitMasks(_hand_mask())
    assert len(bm) == 3 and bm.image_size == (8, 8)
    assert bm.nonempty().tolist() == [True, True, False]
    assert bm.area().tolist() == [16, 1, 0]
    torch.testing.assert_close(
        bm.get_bounding_boxes().tensor,
        torch.tensor([[2.0, 0.0, 6.0, 4.0], [7.0, 5.0, 8.0, 6.0], [0.0, 0.0, 0.0, 0.0]]),
    )
    assert len(BitMasks(torch.zeros(0, 4, 4)).get_bounding_boxes()) == 0
    assert BitMasks(np.ones((1, 2, 2), dtype=np.uint8)).tensor.dtype == torch.bool
    with pytest.raises(ValueError, match=r"Tensor\[N, H, W\]"):
        BitMasks(torch.zeros(4, 4))
    assert len(bm[0]) == 1 and len(bm[1:]) == 2 and len(bm[bm.nonempty()]) == 2
    assert len(BitMasks.cat([bm, bm[0]])) == 4
    assert repr(bm) == "BitMasks(num_instances=3)"
    assert [t.shape for t in bm] == [torch.Size([8, 8])] * 3
    assert bm.to("cpu").device == torch.device("cpu")


def test_bitmasks_from_polygons_matches_pycocotools():
    pm = PolygonMasks([[SQUARE], [TRIANGLE, SQUARE + 40]])
    bm = BitMasks.from_polygon_masks(pm, 60, 70)
    assert bm.tensor.shape == (2, 60, 70)
    for i, polys in enumerate(pm.polygons):
        rle = mask_util.merge(mask_util.frPyObjects(polys, 60, 70))
        assert np.array_equal(bm.tensor[i].numpy(), mask_util.decode(rle).astype(bool))
    assert BitMasks.from_polygon_masks(pm.polygons, 60, 70).tensor.equal(bm.tensor)
    assert BitMasks.from_polygon_masks([], 5, 6).tensor.shape == (0, 5, 6)


def test_bitmasks_crop_and_resize_hand_built():
    bm = BitMasks(_hand_mask())
    # box = whole image at size 4: each output cell averages a 2x2 block (aligned ROIAlign
    # samples the pixel centres exactly), thresholded at 0.5
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [6.0, 4.0, 8.0, 6.0], [0.0, 0.0, 8.0, 8.0]])
    out = bm.crop_and_resize(boxes, 4)
    assert out.shape == (3, 4, 4) and out.dtype == torch.bool
    expected0 = torch.zeros(4, 4, dtype=torch.bool)
    expected0[0:2, 1:3] = True
    assert out[0].equal(expected0)
    # box over the object's pixel region (columns 6-7, rows 4-5): only its right/bottom quarter
    expected1 = torch.zeros(4, 4, dtype=torch.bool)
    expected1[2:, 2:] = True
    assert out[1].equal(expected1)
    assert not out[2].any()
    # a box exactly on the rectangle gives a full mask
    assert bm[0].crop_and_resize(torch.tensor([[2.0, 0.0, 6.0, 4.0]]), 4).all()
    assert bm[[]].crop_and_resize(torch.zeros(0, 4), 5).shape == (0, 5, 5)
    with pytest.raises(ValueError, match="2 boxes for 3"):
        bm.crop_and_resize(boxes[:2], 4)


def test_roi_masks():
    roi = ROIMasks(torch.ones(2, 2, 2))
    assert len(roi) == 2 and len(roi[0]) == 1 and len(roi[-1]) == 1 and len(roi[:1]) == 1
    boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 1.0, 3.0]])
    bm = roi.to_bitmasks(boxes, 10, 10)
    assert isinstance(bm, BitMasks) and bm.tensor.shape == (2, 10, 10)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[2:6, 2:6] = True
    assert bm.tensor[0].equal(expected)
    assert bm.tensor[1].sum() == 3 and bm.tensor[1, :3, 0].all()
    same = BitMasks.from_roi_masks(roi, 10, 10, boxes=Boxes(boxes))
    assert same.tensor.equal(bm.tensor)
    with pytest.raises(ValueError, match=r"Tensor\[N, M, M\]"):
        ROIMasks(torch.zeros(2, 2))
    assert repr(roi) == "ROIMasks(num_instances=2)"
    assert roi.to("cpu").device == torch.device("cpu")

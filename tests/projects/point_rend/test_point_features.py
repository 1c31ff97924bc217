"""Point sampling ops of PointRend against hand-computed values and RoIAlign."""

from __future__ import annotations

import pytest
import torch

from torchdet.layers import roi_align
from torchdet.projects.point_rend import (
    generate_regular_grid_point_coords,
    get_point_coords_wrt_image,
    get_uncertain_point_coords_on_grid,
    get_uncertain_point_coords_with_randomness,
    point_sample,
    point_sample_fine_grained_features,
    sample_point_labels,
)
from torchdet.structures import BitMasks, Boxes, Instances


def test_point_sample_hand_computed():
    # 2x2 map [[0, 1], [2, 3]]: pixel centres at normalized 0.25 / 0.75.
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    pts = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.5, 0.25]]])
    out = point_sample(x, pts, align_corners=False)
    assert out.shape == (1, 1, 5)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 1.0, 1.5, 2.0, 0.5]))
    # A 4-d grid keeps its layout.
    assert point_sample(x, pts.view(1, 5, 1, 2), align_corners=False).shape == (1, 1, 5, 1)


def test_point_sample_bad_input():
    with pytest.raises(ValueError, match="point_coords"):
        point_sample(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="input"):
        point_sample(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))


def test_regular_grid():
    grid = generate_regular_grid_point_coords(3, 2, "cpu")
    assert grid.shape == (3, 4, 2)
    expected = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    for r in range(3):
        torch.testing.assert_close(grid[r], expected)
    assert generate_regular_grid_point_coords(0, 7, "cpu").shape == (0, 49, 2)


def test_uncertain_points_on_grid():
    # Uncertainty of a 2x3 map; the 2 largest are flat indices 4 (row 1, col 1) and 2.
    u = torch.tensor([[[[0.0, -5.0, -1.0], [-3.0, -0.5, -4.0]]]]) - 1.0
    u[0, 0, 0, 0] = -10.0
    idx, coords = get_uncertain_point_coords_on_grid(u, 2)
    assert idx.tolist() == [[4, 2]]
    torch.testing.assert_close(coords, torch.tensor([[[0.5, 0.75], [5 / 6, 0.25]]]))
    # More points than cells: every cell.
    idx, coords = get_uncertain_point_coords_on_grid(u, 100)
    assert idx.shape == (1, 6) and coords.shape == (1, 6, 2)


def test_uncertain_points_with_randomness_keeps_the_most_uncertain():
    torch.manual_seed(0)
    # Logits x - 0.5 along x: uncertainty -|x - 0.5| is highest at the vertical midline.
    side = 16
    xs = (torch.arange(side) + 0.5) / side - 0.5
    logits = xs.view(1, 1, 1, side).expand(2, 1, side, side).contiguous()
    pts = get_uncertain_point_coords_with_randomness(
        logits,
        lambda lg: -lg.abs(),
        num_points=20,
        oversample_ratio=3,
        importance_sample_ratio=0.75,
    )
    assert pts.shape == (2, 20, 2)
    assert ((pts >= 0) & (pts <= 1)).all()
    # The 15 importance-sampled points are the 15 of 60 uniform draws nearest to x = 0.5:
    # on average much nearer than uniform points (mean distance 0.25).
    assert (pts[:, :15, 0] - 0.5).abs().mean() < 0.12
    with pytest.raises(ValueError, match="oversample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, lambda lg: lg, 4, 0.5, 0.5)
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, lambda lg: lg, 4, 2, 1.5)


def test_point_coords_wrt_image():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    pts = torch.tensor([[[0.0, 0.0], [0.5, 0.25], [1.0, 1.0]]])
    out = get_point_coords_wrt_image(boxes, pts)
    torch.testing.assert_close(out, torch.tensor([[[10.0, 20.0], [20.0, 30.0], [30.0, 60.0]]]))


def test_fine_grained_features_on_a_grid_equal_roi_align():
    torch.manual_seed(0)
    features = [torch.randn(2, 3, 16, 20), torch.randn(2, 2, 8, 10)]
    scales = [1 / 4, 1 / 8]
    boxes = [
        Boxes(torch.tensor([[4.0, 6.0, 50.0, 40.0]])),
        Boxes(torch.tensor([[0.0, 0.0, 79.0, 63.0], [30.5, 10.0, 33.0, 60.0]])),
    ]
    grid = generate_regular_grid_point_coords(3, 7, "cpu")
    out, wrt_image = point_sample_fine_grained_features(features, scales, boxes, grid)
    assert out.shape == (3, 5, 49) and wrt_image.shape == (3, 49, 2)
    rois = torch.cat([torch.tensor([[0.0], [1.0], [1.0]]), Boxes.cat(boxes).tensor], dim=1)
    for level, (f, s) in enumerate(zip(features, scales)):
        ref = roi_align(f, rois, (7, 7), s, 1, True).flatten(2)
        channels = slice(0, 3) if level == 0 else slice(3, 5)
        torch.testing.assert_close(out[:, channels], ref, atol=1e-5, rtol=1e-5)


def test_fine_grained_features_empty_image():
    features = [torch.randn(2, 3, 8, 8)]
    boxes = [Boxes(torch.zeros(0, 4)), Boxes(torch.tensor([[0.0, 0.0, 16.0, 16.0]]))]
    out, _ = point_sample_fine_grained_features(features, [0.5], boxes, torch.rand(1, 5, 2))
    assert out.shape == (1, 3, 5)
    with pytest.raises(ValueError, match="regions"):
        point_sample_fine_grained_features(features, [0.5], boxes, torch.rand(2, 5, 2))


def test_sample_point_labels_from_bit_masks():
    inst = Instances((4, 4))
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :, 2:] = True  # right half
    inst.gt_masks = BitMasks(mask)
    empty = Instances((4, 4))
    empty.gt_masks = BitMasks(torch.zeros(0, 4, 4, dtype=torch.bool))
    # Pixel centres at x + 0.5; x = 2.0 is the edge between columns 1 and 2 -> 0.5.
    pts = torch.tensor([[[0.5, 0.5], [3.5, 3.5], [2.0, 1.5]]])
    labels = sample_point_labels([empty, inst], pts)
    torch.testing.assert_close(labels, torch.tensor([[0.0, 1.0, 0.5]]))


def test_sample_point_labels_needs_bit_masks():
    inst = Instances((4, 4))
    inst.gt_masks = torch.zeros(1, 4, 4)
    with pytest.raises(TypeError, match="bitmask"):
        sample_point_labels([inst], torch.zeros(1, 2, 2))

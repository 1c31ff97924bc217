"""Tests for the rotated-box IoU kernel ``torchdet.layers.rotated_boxes.pairwise_iou_rotated``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torchdet.layers.rotated_boxes as rotated_boxes_module
from torchdet.layers.rotated_boxes import iou_rotated_pairs, pairwise_iou_rotated


def _corners(box) -> np.ndarray:
    """Corners of a (cx, cy, w, h, angle_deg) box, angle counter-clockwise on screen (y down)."""
    cx, cy, w, h, a = (float(x) for x in box)
    t = math.radians(a)
    u = np.array([math.cos(t), -math.sin(t)])
    v = np.array([math.sin(t), math.cos(t)])
    c = np.array([cx, cy])
    return np.array(
        [c + sx * w / 2 * u + sy * h / 2 * v for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    )


def _clip(subject: list, clip: np.ndarray) -> list:
    """Sutherland-Hodgman: clip polygon ``subject`` by convex counter-clockwise ``clip``."""

    def side(p, a, b):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    out = subject
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        inp, out = out, []
        for j in range(len(inp)):
            p, q = inp[j], inp[(j + 1) % len(inp)]
            sp, sq = side(p, a, b), side(q, a, b)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                out.append(p + (q - p) * (sp / (sp - sq)))
        if not out:
            return []
    return out


def _area(poly) -> float:
    if len(poly) < 3:
        return 0.0
    p = np.asarray(poly)
    return 0.5 * abs(float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - p[:, 1] * np.roll(p[:, 0], -1))))


def _reference_iou(b1, b2) -> float:
    """Independent loop-based oracle (float64 numpy polygon clipping)."""
    c1, c2 = _corners(b1), _corners(b2)
    # The corner order is counter-clockwise in a y-up frame; Sutherland-Hodgman above keeps the
    # left side, which is the inside for that orientation.
    inter = _area(_clip(list(c1), c2))
    a1, a2 = float(b1[2] * b1[3]), float(b2[2] * b2[3])
    return inter / (a1 + a2 - inter)


def test_parity_with_detectron2(ops_cases):
    case = ops_cases["pairwise_iou_rotated"]
    out = pairwise_iou_rotated(case["inputs"]["boxes1"], case["inputs"]["boxes2"])
    assert out.shape == case["output"].shape
    assert out.dtype == case["output"].dtype
    assert (out - case["output"]).abs().max().item() <= 1e-4
    # the fixture must exercise real overlaps, not only zeros
    assert (case["output"] > 0).sum() > 50


def test_hand_computed_cases():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 2.0, 4.0, 0.0],  # 0
            [0.0, 0.0, 4.0, 2.0, 90.0],  # 1: the same rectangle, described rotated by 90
            [0.0, 0.0, 2.0, 2.0, 0.0],  # 2: axis-aligned 2x2 square
            [0.0, 0.0, 2.0, 2.0, 45.0],  # 3: the same square rotated by 45 degrees
            [10.0, 10.0, 1.0, 1.0, 30.0],  # 4: far from everything
            [1.0, 0.0, 2.0, 2.0, 0.0],  # 5: square 2 shifted right by 1
            [0.0, 0.0, 2.0, 4.0, 180.0],  # 6: box 0 rotated by 180 degrees
        ]
    )
    iou = pairwise_iou_rotated(boxes, boxes)
    torch.testing.assert_close(iou.diagonal(), torch.ones(7))
    assert iou[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert iou[0, 6] == pytest.approx(1.0, abs=1e-6)
    # square inside the 2x4 rectangle: 4 / 8
    assert iou[0, 2] == pytest.approx(0.5, abs=1e-6)
    # 45-degree square vs axis square: an octagon, 4 corner triangles of area (sqrt2 - 1)^2 cut
    inter = 4.0 - 4.0 * (math.sqrt(2.0) - 1.0) ** 2
    assert iou[2, 3] == pytest.approx(inter / (8.0 - inter), abs=1e-6)
    assert iou[2, 3] == pytest.approx(1.0 / math.sqrt(2.0), abs=1e-6)
    # axis-aligned overlap: intersection 1x2 = 2, union 6
    assert iou[2, 5] == pytest.approx(1.0 / 3.0, abs=1e-6)
    assert (iou[4, :4] == 0).all() and (iou[4, 5:] == 0).all()
    torch.testing.assert_close(iou, iou.t())


def test_angle_is_counter_clockwise_on_screen():
    # A long thin box at +45 degrees points towards the upper right of the screen, where y
    # decreases (Detectron2's convention); a unit box there overlaps it, its mirror does not.
    stick = torch.tensor([[0.0, 0.0, 10.0, 0.5, 45.0]])
    probes = torch.tensor([[3.0, -3.0, 1.0, 1.0, 0.0], [3.0, 3.0, 1.0, 1.0, 0.0]])
    iou = pairwise_iou_rotated(stick, probes)
    assert iou[0, 0] > 0.05
    assert iou[0, 1] == 0


def test_matches_polygon_clipping_oracle():
    g = torch.Generator().manual_seed(3)
    n = 40
    b1 = torch.rand(n, 5, generator=g, dtype=torch.float64) * torch.tensor(
        [60, 60, 40, 40, 360.0], dtype=torch.float64
    ) + torch.tensor([0, 0, 1, 1, -180.0], dtype=torch.float64)
    b2 = b1.clone()
    b2[:, :2] += torch.randn(n, 2, generator=g, dtype=torch.float64) * 10
    b2[:, 2:4] *= 0.5 + torch.rand(n, 2, generator=g, dtype=torch.float64)
    b2[:, 4] += torch.randn(n, generator=g, dtype=torch.float64) * 30
    # far from the origin, where float32 kernels lose precision without re-centring
    b1[n // 2 :, :2] += 4000.0
    b2[n // 2 :, :2] += 4000.0
    out = pairwise_iou_rotated(b1, b2)
    assert out.dtype == torch.float64
    expected = torch.tensor(
        [[_reference_iou(b1[i].numpy(), b2[j].numpy()) for j in range(n)] for i in range(n)],
        dtype=torch.float64,
    )
    assert (expected.diagonal() > 0).sum() > n // 2
    assert (out - expected).abs().max().item() <= 1e-8


def test_nearly_and_exactly_shared_edges():
    # Boxes sharing an edge (same and opposite orientation) and boxes touching at an edge.
    boxes = torch.tensor(
        [
            [0.0, 0.0, 4.0, 2.0, 30.0],
            [0.0, 0.0, 4.0, 1.0, 30.0],  # shares the two long edge lines' direction, inside
            [0.0, 0.0, 2.0, 4.0, 120.0],  # identical to box 0
            [0.0, 0.0, 2.0, 4.0, -60.0],  # identical to box 0
        ],
        dtype=torch.float64,
    )
    iou = pairwise_iou_rotated(boxes, boxes)
    assert iou[0, 1].item() == pytest.approx(0.5, abs=1e-8)
    assert iou[0, 2].item() == pytest.approx(1.0, abs=1e-8)
    assert iou[0, 3].item() == pytest.approx(1.0, abs=1e-8)
    # two unit squares side by side (shared edge, opposite orientation): IoU 0
    touching = torch.tensor([[0.5, 0.5, 1.0, 1.0, 0.0], [1.5, 0.5, 1.0, 1.0, 0.0]])
    assert pairwise_iou_rotated(touching[:1], touching[1:]).item() == pytest.approx(0.0, abs=1e-7)
    # same, rotated together by 37 degrees about the origin
    t = math.radians(37.0)
    centers = torch.tensor([[0.5, 0.5], [1.5, 0.5]], dtype=torch.float64)
    rot = torch.tensor(
        [[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]], dtype=torch.float64
    )
    moved = torch.cat(
        [centers @ rot.t(), torch.ones(2, 2, dtype=torch.float64), torch.full((2, 1), 37.0)], dim=1
    )
    assert pairwise_iou_rotated(moved[:1], moved[1:]).item() == pytest.approx(0.0, abs=1e-8)
    # a half-overlapping copy along the rotated width axis: intersection 1/2, union 3/2
    half = moved.clone()
    half[1, :2] = (moved[0, :2] + moved[1, :2]) / 2
    assert pairwise_iou_rotated(half[:1], half[1:]).item() == pytest.approx(1.0 / 3.0, abs=1e-8)


def test_empty_and_degenerate_inputs():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0, 10.0], [1.0, 1.0, 3.0, 1.0, 20.0]])
    assert pairwise_iou_rotated(torch.zeros(0, 5), boxes).shape == (0, 2)
    assert pairwise_iou_rotated(boxes, torch.zeros(0, 5)).shape == (2, 0)
    assert pairwise_iou_rotated(torch.zeros(0, 5), torch.zeros(0, 5)).shape == (0, 0)
    degenerate = torch.tensor([[0.0, 0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 2.0, 0.0, 45.0]])
    out = pairwise_iou_rotated(degenerate, torch.cat([boxes, degenerate]))
    assert (out == 0).all()
    # a float64 input stays float64
    assert pairwise_iou_rotated(boxes.double(), boxes.double()).dtype == torch.float64


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="boxes1"):
        pairwise_iou_rotated(torch.zeros(3, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="boxes2"):
        pairwise_iou_rotated(torch.zeros(3, 5), torch.zeros(5))
    with pytest.raises(TypeError, match="floating"):
        pairwise_iou_rotated(torch.zeros(3, 5, dtype=torch.int64), torch.zeros(2, 5))
    with pytest.raises(TypeError, match="boxes1"):
        pairwise_iou_rotated([[0, 0, 1, 1, 0]], torch.zeros(2, 5))


def test_chunking_does_not_change_results(monkeypatch):
    g = torch.Generator().manual_seed(1)
    boxes = torch.rand(200, 5, generator=g) * torch.tensor([100, 100, 40, 40, 360.0])
    expected = pairwise_iou_rotated(boxes, boxes[:150])
    monkeypatch.setattr(rotated_boxes_module, "_CHUNK_CPU", 97)
    monkeypatch.setattr(rotated_boxes_module, "_PREFILTER_ELEMENTS", 1000)
    out = pairwise_iou_rotated(boxes, boxes[:150])
    assert (expected > 0).float().mean() > 0.05
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_iou_rotated_pairs_matches_matrix_diagonal():
    g = torch.Generator().manual_seed(2)
    b1 = torch.rand(300, 5, generator=g) * torch.tensor([100, 100, 40, 40, 360.0])
    b2 = torch.rand(300, 5, generator=g) * torch.tensor([100, 100, 40, 40, 360.0])
    out = iou_rotated_pairs(b1, b2)
    assert out.dtype == torch.float32 and out.shape == (300,)
    torch.testing.assert_close(out, pairwise_iou_rotated(b1, b2).diagonal(), rtol=0, atol=0)
    assert iou_rotated_pairs(torch.zeros(0, 5), torch.zeros(0, 5)).shape == (0,)
    with pytest.raises(ValueError, match="same length"):
        iou_rotated_pairs(b1, b2[:3])


@pytest.mark.parametrize("far", [False, True])
def test_grid_boxes_with_shared_and_nearly_parallel_edges(far):
    # Integer centers and sizes with angles at multiples of 30/45/90 degrees (and 1e-7 degrees
    # off them) make many shared, touching and nearly coincident edges: the cases where a
    # kernel can count a shared edge twice or not at all.
    rng = np.random.default_rng(7 if far else 5)
    n = 36
    angles = [0, 90, 180, -90, 45, -45, 30, 120, 270, 360, 1e-7, 89.9999999]
    ang = rng.choice(angles, size=n)
    centers = rng.integers(0, 6, size=(n, 2)).astype(float)
    sizes = rng.integers(1, 5, size=(n, 2)).astype(float)
    sizes[:3] = [[1e-3, 5.0], [100.0, 0.01], [0.5, 0.5]]
    if far:
        centers, sizes = centers * 1000 + 12345.0, sizes * 1000
    boxes = torch.tensor(np.concatenate([centers, sizes, ang[:, None]], 1), dtype=torch.float64)
    out = pairwise_iou_rotated(boxes, boxes)

    def recentred(box, origin):
        box = box.clone()
        box[:2] -= origin
        return box.numpy()

    expected = torch.tensor(
        [
            [
                _reference_iou(recentred(boxes[i], boxes[i, :2]), recentred(boxes[j], boxes[i, :2]))
                for j in range(n)
            ]
            for i in range(n)
        ],
        dtype=torch.float64,
    )
    assert (expected > 0).float().mean() > 0.3
    assert (out - expected).abs().max().item() <= 1e-6


def test_thin_boxes_at_tiny_relative_angles():
    # Long thin boxes crossing at tiny angles: their long edges nearly coincide, and their short
    # edges sit next to each other's lines. Any tolerance applied to such nearly (but not)
    # parallel edges misplaces a clipping point by up to an edge length, which a kernel
    # summing edge contributions amplifies by the box length (IoU > 1 was seen).
    base = torch.tensor([-11.44, 6.05, 88.95, 0.0132, -122.26], dtype=torch.float64)
    deltas = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 180 + 1e-3, -1e-4, 90.0 + 1e-4]
    b1 = base.repeat(len(deltas), 1)
    b2 = b1.clone()
    b2[:, 4] += torch.tensor(deltas, dtype=torch.float64)
    b2[-1, 2:4] = b2[-1, 2:4].flip(0)  # the 90-degree one describes the box with swapped sides
    out = iou_rotated_pairs(b1, b2)
    expected = torch.tensor(
        [_reference_iou(b1[i].numpy(), b2[i].numpy()) for i in range(len(deltas))],
        dtype=torch.float64,
    )
    assert (out <= 1).all()
    assert (out - expected).abs().max().item() <= 1e-5

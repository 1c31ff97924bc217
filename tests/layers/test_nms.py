"""Tests for ``torchdet.layers.nms``: exact parity with the reference kernels (fixtures and a plain
greedy loop written here), edge cases, both internal paths (sweep and blocked dense)."""

from __future__ import annotations

import importlib

import pytest
import torch

from torchdet.layers import batched_nms, batched_nms_rotated, nms, nms_rotated
from torchdet.layers.rotated_boxes import pairwise_iou_rotated

nms_module = importlib.import_module("torchdet.layers.nms")


# ------------------------------------------------------------------------------------------------
# reference: the textbook greedy loop over a precomputed IoU matrix, comparisons in double as the
# C++ kernels do (IoU of float32 boxes is evaluated in float32 with torchvision's formula)
# ------------------------------------------------------------------------------------------------
def _iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    boxes = boxes.float() if boxes.dtype != torch.float64 else boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def _greedy(iou: torch.Tensor, scores: torch.Tensor, suppress) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True)[1].tolist()
    iou = iou.tolist()  # python floats: comparisons below are in double
    suppressed = [False] * len(order)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1 :]:
            if not suppressed[j] and suppress(iou[i][j]):
                suppressed[j] = True
    return torch.tensor(keep, dtype=torch.int64)


def _ref_nms(boxes, scores, t):
    return _greedy(_iou_matrix(boxes), scores, lambda v: v > t)


def _ref_nms_rotated(boxes, scores, t):
    return _greedy(pairwise_iou_rotated(boxes, boxes), scores, lambda v: v >= t)


def _ref_batched(ref, boxes, scores, idxs, t):
    keep = torch.zeros(len(scores), dtype=torch.bool)
    for c in idxs.unique().tolist():
        members = torch.nonzero(idxs == c)[:, 0]
        keep[members[ref(boxes[members], scores[members], t)]] = True
    kept = torch.nonzero(keep)[:, 0]
    return kept[torch.sort(scores[kept], descending=True, stable=True)[1]]


def _random_boxes(n: int, g: torch.Generator, extent=(100.0, 80.0), size=(4.0, 40.0)):
    centers = torch.rand(n, 2, generator=g) * torch.tensor(extent)
    sizes = torch.rand(n, 2, generator=g) * (size[1] - size[0]) + size[0]
    return torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)


def _clustered_boxes(n: int, g: torch.Generator) -> torch.Tensor:
    """Jittered copies of a few boxes: many pairs above every threshold, long suppression chains."""
    base = _random_boxes(6, g, size=(10.0, 50.0))
    pick = torch.randint(0, 6, (n,), generator=g)
    return base[pick] + torch.randn(n, 4, generator=g) * 2.0


def _random_rotated(n: int, g: torch.Generator, clustered: bool) -> torch.Tensor:
    if clustered:
        base = torch.cat(
            [torch.rand(5, 2, generator=g) * 60, torch.rand(5, 2, generator=g) * 30 + 5], 1
        )
        xywh = base[torch.randint(0, 5, (n,), generator=g)] + torch.randn(n, 4, generator=g)
        angle = torch.randn(n, 1, generator=g) * 8.0 + 30.0 * torch.randint(
            0, 2, (n, 1), generator=g
        )
    else:
        xywh = torch.cat(
            [torch.rand(n, 2, generator=g) * 100, torch.rand(n, 2, generator=g) * 35 + 3], 1
        )
        angle = torch.rand(n, 1, generator=g) * 360 - 180
    return torch.cat([xywh, angle], 1)


# ------------------------------------------------------------------------------------------------
# parity with the reference fixtures
# ------------------------------------------------------------------------------------------------
def _cases(ops_cases: dict, prefix: str) -> dict:
    cases = {k: v for k, v in ops_cases.items() if k.startswith(prefix)}
    if not cases:
        pytest.skip(f"no {prefix}* case in ops.pt")
    return cases


def test_nms_fixtures(ops_cases):
    for name, case in _cases(ops_cases, "nms_").items():
        if name.startswith("nms_rotated"):
            continue
        out = nms(case["inputs"]["boxes"], case["inputs"]["scores"], **case["args"])
        assert out.dtype == torch.int64
        assert torch.equal(out, case["output"]), name


def test_batched_nms_fixtures(ops_cases):
    for name, case in _cases(ops_cases, "batched_nms_").items():
        out = batched_nms(**case["inputs"], **case["args"])
        assert torch.equal(out, case["output"]), name


def test_nms_rotated_fixtures(ops_cases):
    for name, case in _cases(ops_cases, "nms_rotated_").items():
        out = nms_rotated(case["inputs"]["boxes"], case["inputs"]["scores"], **case["args"])
        assert torch.equal(out, case["output"]), name


def test_fixture_boxes_through_dense_path(ops_cases, monkeypatch):
    # The blocked dense greedy must agree with the reference as well.
    monkeypatch.setattr(nms_module, "_MAX_SWEEP_PAIRS", -1)
    for name, case in _cases(ops_cases, "nms_").items():
        fn = nms_rotated if name.startswith("nms_rotated") else nms
        out = fn(case["inputs"]["boxes"], case["inputs"]["scores"], **case["args"])
        assert torch.equal(out, case["output"]), name


# ------------------------------------------------------------------------------------------------
# hand-computed cases
# ------------------------------------------------------------------------------------------------
def test_nms_iou_exactly_at_threshold_is_kept():
    # IoU = 50 / 100 = 0.5 exactly: suppressed only for thresholds below 0.5 (strict >).
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nms_rotated_iou_exactly_at_threshold_is_suppressed():
    # Detectron2's rotated kernel suppresses at IoU >= threshold.
    boxes = torch.tensor([[5.0, 5.0, 10.0, 10.0, 0.0], [5.0, 5.0, 10.0, 5.0, 0.0]])
    scores = torch.tensor([0.8, 0.9])
    assert nms_rotated(boxes, scores, 0.5).tolist() == [1]
    assert nms_rotated(boxes, scores, 0.51).tolist() == [1, 0]


def test_nms_threshold_not_representable_in_float32():
    # float32(0.3) is above 0.3: an IoU equal to float32(0.3) exceeds 0.3 and must be suppressed.
    t32 = torch.tensor(0.3, dtype=torch.float32).item()
    assert t32 > 0.3
    # Box 1 inside box 0 with IoU = area1 / area0 = 0.3 * 100 / 100 computed in float32.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 3.0]])
    iou = _iou_matrix(boxes)[0, 1].item()
    assert iou == t32
    assert nms(boxes, torch.tensor([1.0, 0.5]), 0.3).tolist() == [0]


def test_nms_score_ties_keep_input_order():
    boxes = torch.tensor([[0.0, 0, 1, 1], [2.0, 0, 3, 1], [4.0, 0, 5, 1], [6.0, 0, 7, 1]])
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.5, 0.5]), 0.5).tolist() == [1, 0, 2, 3]
    # Identical boxes with equal scores: the first one wins.
    same = torch.tensor([[0.0, 0, 4, 4]] * 3)
    assert nms(same, torch.ones(3), 0.5).tolist() == [0]


def test_nms_empty_and_single():
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    assert nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    assert (
        batched_nms(
            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5
        ).numel()
        == 0
    )
    assert nms_rotated(torch.zeros(0, 5), torch.zeros(0), 0.5).numel() == 0
    empty_r = batched_nms_rotated(
        torch.zeros(0, 5), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5
    )
    assert empty_r.shape == (0,) and empty_r.dtype == torch.int64
    one_r = nms_rotated(torch.tensor([[1.0, 1, 2, 2, 30]]), torch.tensor([0.1]), 0.5)
    assert one_r.tolist() == [0]


@pytest.mark.parametrize("n", [5, 600])
def test_nms_identical_boxes(n):
    boxes = torch.tensor([[3.0, 4.0, 20.0, 30.0]]).repeat(n, 1)
    scores = torch.rand(n)
    best = int(torch.argmax(scores))
    assert nms(boxes, scores, 0.7).tolist() == [best]
    # IoU is exactly 1: "> 1" never holds, so nothing is suppressed.
    assert nms(boxes, scores, 1.0).tolist() == torch.sort(scores, descending=True)[1].tolist()


def test_nms_thresholds_zero_and_one():
    boxes = torch.tensor([[0.0, 0, 10, 10], [9.0, 9, 19, 19], [10.0, 0, 20, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # Threshold 0: any positive overlap suppresses; touching edges (box 2) do not overlap.
    assert nms(boxes, scores, 0.0).tolist() == [0, 2]
    assert nms(boxes, scores, 1.0).tolist() == [0, 1, 2, 3]


def test_nms_negative_threshold_suppresses_disjoint_boxes():
    boxes = torch.tensor([[0.0, 0, 1, 1], [5.0, 5, 6, 6]])
    assert nms(boxes, torch.tensor([0.1, 0.2]), -0.1).tolist() == [1]


def test_nms_degenerate_and_nan_boxes_never_suppress():
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [0.0, 0, 10, 10], [5.0, 5, 5, 5], [float("nan"), 0, 10, 10]]
    )
    scores = torch.tensor([0.4, 0.3, 0.9, 0.8])
    # Box 2 has zero area (IoU 0); box 3 has a NaN coordinate (IoU NaN, never > t).
    expected = _ref_nms(boxes, scores, 0.5)
    assert expected.tolist() == [2, 3, 0]
    assert nms(boxes, scores, 0.5).tolist() == [2, 3, 0]


# ------------------------------------------------------------------------------------------------
# randomised comparison with the greedy loop
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 0.7, 0.95, 1.0, -0.5])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_nms_matches_greedy_loop(t, kind):
    g = torch.Generator().manual_seed(int(t * 100) + 7)
    boxes = _random_boxes(300, g) if kind == "random" else _clustered_boxes(300, g)
    scores = torch.rand(300, generator=g)
    assert torch.equal(nms(boxes, scores, t), _ref_nms(boxes, scores, t))


@pytest.mark.parametrize("t", [0.0, 0.5, 0.9])
def test_nms_banded_sweep_matches_greedy_loop(t, monkeypatch):
    # Force the sweep's second pass (bands along y), also for batched NMS's per-class mode.
    monkeypatch.setattr(nms_module, "_BAND_PAIRS_PER_BOX", -1000)
    g = torch.Generator().manual_seed(31)
    for boxes in (_random_boxes(400, g), _clustered_boxes(400, g)):
        scores = torch.rand(400, generator=g)
        assert torch.equal(nms(boxes, scores, t), _ref_nms(boxes, scores, t))
    boxes = _clustered_boxes(1100, g)
    scores = torch.rand(1100, generator=g)
    idxs = torch.randint(0, 3, (1100,), generator=g)
    expected = _ref_batched(_ref_nms, boxes, scores, idxs, t)
    assert torch.equal(batched_nms(boxes, scores, idxs, t), expected)
    rboxes = _random_rotated(200, g, clustered=True)
    assert torch.equal(
        nms_rotated(rboxes, scores[:200], max(t, 0.1)),
        _ref_nms_rotated(rboxes, scores[:200], max(t, 0.1)),
    )


@pytest.mark.parametrize("t", [0.3, 0.7])
def test_nms_dense_path_matches_greedy_loop(t, monkeypatch):
    monkeypatch.setattr(nms_module, "_MAX_SWEEP_PAIRS", -1)
    g = torch.Generator().manual_seed(3)
    boxes = _clustered_boxes(700, g)  # more than one dense block
    scores = torch.rand(700, generator=g)
    assert torch.equal(nms(boxes, scores, t), _ref_nms(boxes, scores, t))


def test_nms_long_suppression_chain():
    # Each box overlaps the next one strongly, scores decrease along the chain: greedy keeps
    # every other box, and each decision depends on the previous one. Neighbours: IoU 95 / 105;
    # next-but-one: 90 / 110 < 0.85.
    n = 200
    x = torch.arange(n, dtype=torch.float32) * 0.5
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], 1)
    scores = torch.linspace(1, 0, n)
    out = nms(boxes, scores, 0.85)
    assert out.tolist() == list(range(0, n, 2))
    assert torch.equal(out, _ref_nms(boxes, scores, 0.85))


@pytest.mark.parametrize("rounds", [0, 1, 3])
def test_nms_blockwise_resolution_after_few_rounds(rounds, monkeypatch):
    # Whatever the relaxation leaves undecided is finished block by block in score order.
    monkeypatch.setattr(nms_module, "_RELAX_ROUNDS", rounds)
    monkeypatch.setattr(nms_module, "_SEQ_BLOCK", 7)
    g = torch.Generator().manual_seed(20 + rounds)
    boxes = _clustered_boxes(300, g)
    scores = torch.rand(300, generator=g)
    for t in (0.3, 0.6, 0.8):
        assert torch.equal(nms(boxes, scores, t), _ref_nms(boxes, scores, t))
    rboxes = _random_rotated(150, g, clustered=True)
    assert torch.equal(
        nms_rotated(rboxes, scores[:150], 0.5), _ref_nms_rotated(rboxes, scores[:150], 0.5)
    )


def test_nms_small_chunks(monkeypatch):
    # Candidate pairs evaluated over many chunks give the same result.
    monkeypatch.setattr(nms_module, "_PAIR_CHUNK", 64)
    g = torch.Generator().manual_seed(11)
    boxes = _clustered_boxes(250, g)
    scores = torch.rand(250, generator=g)
    assert torch.equal(nms(boxes, scores, 0.5), _ref_nms(boxes, scores, 0.5))


def test_nms_float64_input():
    g = torch.Generator().manual_seed(5)
    boxes = _clustered_boxes(200, g).double()
    scores = torch.rand(200, generator=g, dtype=torch.float64)
    assert torch.equal(nms(boxes, scores, 0.6), _ref_nms(boxes, scores, 0.6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_half_precision_equals_float32_of_same_values(dtype):
    g = torch.Generator().manual_seed(2)
    boxes = _clustered_boxes(200, g).to(dtype)
    scores = torch.rand(200, generator=g).to(dtype)
    expected = nms(boxes.float(), scores.float(), 0.5)
    assert torch.equal(nms(boxes, scores, 0.5), expected)


@pytest.mark.parametrize("n", [300, 1200])  # coordinate-offset trick below 4000 numbers, loop above
def test_batched_nms_matches_per_class_loop(n):
    g = torch.Generator().manual_seed(n)
    boxes = _clustered_boxes(n, g).abs()
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, 5, (n,), generator=g)
    out = batched_nms(boxes, scores, idxs, 0.5)
    if boxes.numel() <= 4000:
        # Same float rounding as torchvision: plain NMS on class-shifted boxes.
        shifted = boxes + (idxs.float() * (boxes.max() + 1))[:, None]
        expected = _ref_nms(shifted, scores, 0.5)
    else:
        expected = _ref_batched(_ref_nms, boxes, scores, idxs, 0.5)
    assert torch.equal(out, expected)
    # And no two kept boxes of one class overlap above the threshold.
    iou = _iou_matrix(boxes[out])
    same = idxs[out][:, None] == idxs[out][None, :]
    assert not ((iou > 0.5) & same).fill_diagonal_(False).any()


def test_batched_nms_large_loop_regime_dense_path(monkeypatch):
    monkeypatch.setattr(nms_module, "_MAX_SWEEP_PAIRS", -1)
    g = torch.Generator().manual_seed(9)
    boxes = _clustered_boxes(1100, g)
    scores = torch.rand(1100, generator=g)
    idxs = torch.randint(0, 3, (1100,), generator=g)
    expected = _ref_batched(_ref_nms, boxes, scores, idxs, 0.6)
    assert torch.equal(batched_nms(boxes, scores, idxs, 0.6), expected)


# ------------------------------------------------------------------------------------------------
# rotated
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("clustered", [False, True])
def test_nms_rotated_matches_greedy_loop(t, clustered):
    g = torch.Generator().manual_seed(int(t * 10) + 100 * clustered)
    boxes = _random_rotated(150, g, clustered)
    scores = torch.rand(150, generator=g)
    assert torch.equal(nms_rotated(boxes, scores, t), _ref_nms_rotated(boxes, scores, t))


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_nms_rotated_non_positive_threshold_keeps_only_the_best(t):
    # IoU >= t holds for every pair, disjoint ones included.
    g = torch.Generator().manual_seed(1)
    boxes = _random_rotated(20, g, clustered=False)
    scores = torch.rand(20, generator=g)
    assert nms_rotated(boxes, scores, t).tolist() == [int(torch.argmax(scores))]


def test_nms_rotated_axis_aligned_equals_nms_on_clear_cases():
    # Angle-0 rotated boxes are axis-aligned boxes; away from IoU ties both NMS agree.
    g = torch.Generator().manual_seed(4)
    xyxy = _clustered_boxes(200, g)
    xyxy = torch.cat([xyxy[:, :2], torch.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)], 1)
    rotated = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
    rotated = torch.cat([rotated, torch.zeros(200, 1)], 1)
    scores = torch.rand(200, generator=g)
    iou = _iou_matrix(xyxy)
    clear = [t for t in (0.5, 0.55, 0.6, 0.45, 0.65) if not ((iou - t).abs() < 1e-4).any()]
    assert clear, "no threshold clear of IoU ties"
    assert torch.equal(nms_rotated(rotated, scores, clear[0]), nms(xyxy, scores, clear[0]))


def test_batched_nms_rotated_matches_per_class_loop():
    g = torch.Generator().manual_seed(21)
    boxes = _random_rotated(200, g, clustered=True)
    boxes[:, :2] -= 30  # negative coordinates must stay apart too
    scores = torch.rand(200, generator=g)
    idxs = torch.randint(0, 4, (200,), generator=g)
    expected = _ref_batched(_ref_nms_rotated, boxes, scores, idxs, 0.4)
    assert torch.equal(batched_nms_rotated(boxes, scores, idxs, 0.4), expected)


# ------------------------------------------------------------------------------------------------
# bad input and devices
# ------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("error")
def test_inputs_requiring_grad():
    g = torch.Generator().manual_seed(6)
    boxes = _clustered_boxes(100, g).requires_grad_(True)
    scores = torch.rand(100, generator=g).requires_grad_(True)
    idxs = torch.randint(0, 3, (100,), generator=g)
    expected = _ref_nms(boxes.detach(), scores.detach(), 0.5)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    assert batched_nms(boxes, scores, idxs, 0.5).numel() > 0
    rboxes = _random_rotated(100, g, clustered=True).requires_grad_(True)
    ref_rot = _ref_nms_rotated(rboxes.detach(), scores.detach(), 0.5)
    assert torch.equal(nms_rotated(rboxes, scores, 0.5), ref_rot)
    assert batched_nms_rotated(rboxes, scores, idxs, 0.5).numel() > 0


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(TypeError, match="floating point"):
        nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="idxs must have shape"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError, match="idxs must be an integer"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="but idxs on meta"):
        batched_nms(
            torch.zeros(3, 4), torch.zeros(3), torch.zeros(3, dtype=torch.int64, device="meta"), 0.5
        )
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 5\)"):
        nms_rotated(torch.zeros(3, 4), torch.zeros(3), 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_nms_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(8)
    boxes = _clustered_boxes(500, g)
    scores = torch.rand(500, generator=g)
    idxs = torch.randint(0, 4, (500,), generator=g)
    out = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert out.device.type == "cuda"
    assert torch.equal(out.cpu(), nms(boxes, scores, 0.5))
    assert torch.equal(
        batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(),
        batched_nms(boxes, scores, idxs, 0.5),
    )
    rboxes = _random_rotated(200, g, clustered=True)
    rscores = torch.rand(200, generator=g)
    assert torch.equal(
        nms_rotated(rboxes.cuda(), rscores.cuda(), 0.5).cpu(), nms_rotated(rboxes, rscores, 0.5)
    )

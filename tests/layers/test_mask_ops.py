"""paste_masks_in_image: reference parity, a per-mask grid_sample reference, hand-made boxes."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from torchdet.layers import paste_masks_in_image


def _per_mask_reference(masks, boxes, h, w, threshold):
    """One grid_sample per mask over its box region (+1 pixel margin), as Detectron2 does on CPU."""
    out = torch.zeros(len(masks), h, w, dtype=torch.bool if threshold >= 0 else torch.uint8)
    for i, (m, (x0, y0, x1, y1)) in enumerate(zip(masks, boxes.tolist())):
        xa, ya = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        xb, yb = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
        if xb <= xa or yb <= ya:
            continue
        gx = (torch.arange(xa, xb, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        gy = (torch.arange(ya, yb, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)[None]
        v = F.grid_sample(m[None, None].float(), grid, align_corners=False)[0, 0]
        out[i, ya:yb, xa:xb] = v >= threshold if threshold >= 0 else (v * 255).to(torch.uint8)
    return out


def test_parity_with_reference(ops_cases):
    if "paste_masks" not in ops_cases:
        pytest.skip("ops.pt has no paste_masks case")
    case = ops_cases["paste_masks"]
    inp, args = case["inputs"], case["args"]

    class _Boxes:  # what Detectron2 passes: a Boxes object
        tensor = inp["boxes"]

    out = paste_masks_in_image(inp["masks"], _Boxes(), args["image_shape"], args["threshold"])
    assert out.dtype == torch.bool and out.shape == case["output"].shape
    assert (out == case["output"]).float().mean().item() >= 0.999


@pytest.mark.parametrize("threshold", [0.5, 0.2, -1.0])
def test_matches_per_mask_grid_sample(threshold):
    gen = torch.Generator().manual_seed(0)
    n, h, w = 40, 70, 90
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w + 20.0, h + 20.0]) - 10
    wh = torch.rand(n, 2, generator=gen) * 60 + 0.5
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([-50.0, -40.0, -20.0, -10.0])  # fully outside
    boxes[1] = torch.tensor([0.0, 0.0, float(w), float(h)])  # whole image
    masks = torch.rand(n, 28, 28, generator=gen)
    out = paste_masks_in_image(masks, boxes, (h, w), threshold)
    ref = _per_mask_reference(masks, boxes, h, w, threshold)
    assert out.dtype == ref.dtype
    if threshold >= 0:
        assert (out == ref).float().mean().item() >= 0.9999
    else:  # uint8 soft masks: float rounding can move a value across an integer
        assert (out.int() - ref.int()).abs().max().item() <= 1


def test_all_ones_mask_fills_exactly_the_pixels_centred_in_the_box():
    # With a constant mask the pasted value is 1 inside, falls to 0.5 exactly at the box edge
    # and below it outside, so threshold 0.5 keeps the pixels whose centres are in the box.
    masks = torch.ones(2, 28, 28)
    boxes = torch.tensor([[2.0, 3.0, 10.0, 8.0], [5.2, 0.0, 7.9, 2.6]])
    out = paste_masks_in_image(masks, boxes, (12, 14))
    expected = torch.zeros(2, 12, 14, dtype=torch.bool)
    expected[0, 3:8, 2:10] = True
    expected[1, 0:3, 5:8] = True  # centres 5.5, 6.5, 7.5 and 0.5, 1.5, 2.5
    assert torch.equal(out, expected)


def test_threshold_zero_marks_only_the_box_region():
    out = paste_masks_in_image(torch.zeros(1, 28, 28), torch.tensor([[3.5, 2.0, 6.0, 4.0]]),
                               (10, 10), threshold=0.0)  # fmt: skip
    expected = torch.zeros(1, 10, 10, dtype=torch.bool)
    expected[0, 1:5, 2:7] = True  # [floor - 1, ceil + 1) in both axes
    assert torch.equal(out, expected)


def test_empty_and_non_square_and_errors():
    assert paste_masks_in_image(torch.zeros(0, 28, 28), torch.zeros(0, 4), (5, 6)).shape == (
        0,
        5,
        6,
    )
    # Non-square masks: interpolation is per axis, so a mask constant along y pastes alike.
    m = torch.rand(1, 1, 5).expand(1, 7, 5)
    out = paste_masks_in_image(m, torch.tensor([[1.0, 1.0, 11.0, 9.0]]), (12, 12))
    ref = _per_mask_reference(m, torch.tensor([[1.0, 1.0, 11.0, 9.0]]), 12, 12, 0.5)
    assert torch.equal(out, ref)
    with pytest.raises(ValueError, match="boxes"):
        paste_masks_in_image(torch.zeros(2, 28, 28), torch.zeros(3, 4), (5, 5))
    with pytest.raises(TypeError, match="boxes"):
        paste_masks_in_image(torch.zeros(2, 28, 28), [1, 2], (5, 5))
    with pytest.raises(ValueError, match="masks"):
        paste_masks_in_image(torch.zeros(28, 28), torch.zeros(1, 4), (5, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(5)
    xy = torch.rand(30, 2, generator=gen) * 150 - 10
    boxes = torch.cat([xy, xy + torch.rand(30, 2, generator=gen) * 80 + 1], dim=1)
    masks = torch.rand(30, 28, 28, generator=gen)
    cpu = paste_masks_in_image(masks, boxes, (120, 160))
    gpu = paste_masks_in_image(masks.cuda(), boxes.cuda(), (120, 160))
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() == cpu).float().mean().item() >= 0.9999


def test_degenerate_boxes_paste_nothing():
    masks = torch.ones(3, 28, 28)
    boxes = torch.tensor([[5.0, 5.0, 5.0, 9.0], [2.0, 4.0, 8.0, 4.0], [3.0, 3.0, 3.0, 3.0]])
    for threshold in (0.5, -1.0):
        out = paste_masks_in_image(masks, boxes, (12, 12), threshold)
        assert int(out.sum()) == 0


def test_memory_chunks_give_the_same_result(monkeypatch):
    module = importlib.import_module("torchdet.layers.mask_ops")
    gen = torch.Generator().manual_seed(4)
    xy = torch.rand(25, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(25, 2, generator=gen) * 30 + 2], dim=1)
    masks = torch.rand(25, 28, 28, generator=gen)
    whole = paste_masks_in_image(masks, boxes, (64, 70))
    monkeypatch.setattr(module, "_CHUNK_PIXELS", 2000)  # one or two masks per chunk
    assert torch.equal(paste_masks_in_image(masks, boxes, (64, 70)), whole)
    ref = _per_mask_reference(masks, boxes, 64, 70, 0.5)
    assert (whole == ref).float().mean().item() >= 0.9999

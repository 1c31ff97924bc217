"""RoIPool: parity with the reference, hand-computed bins, a loop reference, gradients."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from torchdet.layers import ROIPool, roi_pool


def _c_round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _naive(x, rois, out_hw, scale):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = torch.zeros(len(rois), c, oh, ow, dtype=x.dtype)
    for k, (b, x0, y0, x1, y1) in enumerate(rois.tolist()):
        x0, y0, x1, y1 = (_c_round(v * scale) for v in (x0, y0, x1, y1))
        rh, rw = max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)
        for p in range(oh):
            for q in range(ow):
                hs = min(max(math.floor(p * rh / oh) + y0, 0), h)
                he = min(max(math.ceil((p + 1) * rh / oh) + y0, 0), h)
                ws = min(max(math.floor(q * rw / ow) + x0, 0), w)
                we = min(max(math.ceil((q + 1) * rw / ow) + x0, 0), w)
                if he > hs and we > ws:
                    out[k, :, p, q] = x[int(b), :, hs:he, ws:we].amax(dim=(1, 2))
    return out


def test_parity_with_reference(ops_cases):
    names = [name for name in ops_cases if name.startswith("roi_pool_")]
    if not names:
        pytest.skip("ops.pt has no roi_pool_* case")
    for name in names:
        case = ops_cases[name]
        layer = ROIPool(case["args"]["output_size"], case["args"]["spatial_scale"])
        out = layer(case["inputs"]["input"], case["inputs"]["rois"])
        assert out.shape == case["output"].shape, name
        assert (out - case["output"]).abs().max().item() <= 1e-5, name


def test_quadrant_maxima_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = roi_pool(x, torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]]), 2, 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([[5.0, 7.0], [13.0, 15.0]]))
    # 3 columns into 2 bins: bins [0, 2) and [1, 3) overlap (floor / ceil of 1.5).
    out = roi_pool(x, torch.tensor([[0, 0.0, 0.0, 2.0, 0.0]]), (1, 2), 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.0, 2.0]]))


def test_rounding_is_half_away_from_zero():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # 2.5 rounds to 3 (C round), not to 2 (banker's rounding): the 1x1 RoI reads pixel (3, 3).
    out = roi_pool(x, torch.tensor([[0, 2.5, 2.5, 2.5, 2.5]]), 1, 1.0)
    assert out.item() == 15.0
    out = roi_pool(x, torch.tensor([[0, 5.0, 5.0, 5.0, 5.0]]), 1, 0.5)
    assert out.item() == 15.0


def test_empty_bins_and_outside_rois_are_zero():
    x = torch.full((1, 2, 4, 4), -3.0)
    out = roi_pool(x, torch.tensor([[0, 10.0, 10.0, 20.0, 20.0]]), 2, 1.0)
    assert torch.equal(out, torch.zeros_like(out))
    # Half outside: bins over the image hold the (negative) maximum, the others 0.
    out = roi_pool(x, torch.tensor([[0, 2.0, 0.0, 5.0, 3.0]]), 2, 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([[-3.0, 0.0], [-3.0, 0.0]]))
    assert roi_pool(x, torch.zeros(0, 5), 3, 1.0).shape == (0, 2, 3, 3)


def test_matches_loop_reference():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 11, 13, generator=gen)
    k = 15
    xy = torch.rand(k, 2, generator=gen) * 30 - 3
    wh = torch.rand(k, 2, generator=gen) * 20
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=gen).float(), xy, xy + wh], 1)
    out = roi_pool(x, rois, (3, 4), 0.5)
    torch.testing.assert_close(out, _naive(x, rois, (3, 4), 0.5))


def test_gradient_goes_to_the_argmax():
    x = torch.arange(16.0).view(1, 1, 4, 4).requires_grad_(True)
    roi_pool(x, torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]]), 2, 1.0).sum().backward()
    expected = torch.zeros(4, 4)
    expected[1, 1] = expected[1, 3] = expected[3, 1] = expected[3, 3] = 1.0
    torch.testing.assert_close(x.grad[0, 0], expected)


def test_list_rois_dtype_and_errors():
    x = torch.randn(2, 2, 6, 6)
    b = [torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[1.0, 1.0, 5.0, 3.0]])]
    as_tensor = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [1, 1.0, 1.0, 5.0, 3.0]])
    torch.testing.assert_close(ROIPool(2, 1.0)(x, b), ROIPool(2, 1.0)(x, as_tensor))
    assert roi_pool(x.bfloat16(), as_tensor, 2, 1.0).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="rois"):
        roi_pool(x, torch.zeros(2, 6), 2, 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 20, 24, generator=gen)
    xy = torch.rand(40, 2, generator=gen) * 90 - 5
    boxes = torch.cat([xy, xy + torch.rand(40, 2, generator=gen) * 60], dim=1).round()
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=gen).float(), boxes], dim=1)
    torch.testing.assert_close(roi_pool(x.cuda(), rois.cuda(), 7, 0.25).cpu(),
                               roi_pool(x, rois, 7, 0.25))  # fmt: skip


def test_tap_chunks_give_the_same_result(monkeypatch):
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 3, 12, 14, generator=gen)
    xy = torch.rand(20, 2, generator=gen) * 25
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=gen).float(), xy, xy + 10], dim=1)
    whole = roi_pool(x, rois, 3, 0.5)
    monkeypatch.setattr(importlib.import_module("torchdet.layers.roi_align"), "MAX_TAPS", 40)
    torch.testing.assert_close(roi_pool(x, rois, 3, 0.5), whole)

"""Rotated RoIAlign: Detectron2 parity, a loop reference, symmetry properties, gradients."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from torchdet.layers import ROIAlignRotated, roi_align, roi_align_rotated


def _naive(x, rois, out_hw, scale, sampling_ratio):
    """Loop transcription of the reference kernel (float64)."""
    x = x.double()
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = torch.zeros(len(rois), c, oh, ow, dtype=torch.float64)
    for k, (b, cx, cy, rw, rh, ang) in enumerate(rois.double().tolist()):
        cx, cy, rw, rh = cx * scale - 0.5, cy * scale - 0.5, rw * scale, rh * scale
        t = math.radians(ang)
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / oh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / ow)
        for p in range(oh):
            for q in range(ow):
                acc = torch.zeros(c, dtype=torch.float64)
                for iy in range(gh):
                    yy = -rh / 2 + p * rh / oh + (iy + 0.5) * rh / oh / gh
                    for ix in range(gw):
                        xx = -rw / 2 + q * rw / ow + (ix + 0.5) * rw / ow / gw
                        y = yy * math.cos(t) - xx * math.sin(t) + cy
                        xs = yy * math.sin(t) + xx * math.cos(t) + cx
                        if y < -1 or y > h or xs < -1 or xs > w:
                            continue
                        y, xs = max(y, 0.0), max(xs, 0.0)
                        y0, x0 = int(y), int(xs)
                        y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
                        if y0 >= h - 1:
                            y0, y = h - 1, float(h - 1)
                        if x0 >= w - 1:
                            x0, xs = w - 1, float(w - 1)
                        ly, lx = y - y0, xs - x0
                        img = x[int(b)]
                        acc += (
                            (1 - ly) * (1 - lx) * img[:, y0, x0]
                            + (1 - ly) * lx * img[:, y0, x1]
                            + ly * (1 - lx) * img[:, y1, x0]
                            + ly * lx * img[:, y1, x1]
                        )
                out[k, :, p, q] = acc / max(gh * gw, 1)
    return out


def test_parity_with_detectron2(ops_cases):
    names = [name for name in ops_cases if name.startswith("roi_align_rotated_")]
    if not names:
        pytest.skip("ops.pt has no roi_align_rotated_* case")
    for name in names:
        case = ops_cases[name]
        a = case["args"]
        layer = ROIAlignRotated((a["output_size"], a["output_size"]), a["spatial_scale"],
                                a["sampling_ratio"])  # fmt: skip
        out = layer(case["inputs"]["input"], case["inputs"]["rois"])
        assert out.shape == case["output"].shape, name
        assert (out - case["output"]).abs().max().item() <= 1e-4, name


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_loop_reference(sampling_ratio):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 10, 12, generator=gen)
    k = 10
    rois = torch.cat(
        [
            torch.randint(0, 2, (k, 1), generator=gen).float(),
            torch.rand(k, 2, generator=gen) * torch.tensor([24.0, 20.0]),
            torch.rand(k, 2, generator=gen) * 14 + 0.5,
            torch.rand(k, 1, generator=gen) * 360 - 180,
        ],
        dim=1,
    )
    rois = torch.cat([rois, torch.tensor([[0, -40.0, -40.0, 6.0, 6.0, 30.0]])])
    out = roi_align_rotated(x, rois, (3, 2), 0.5, sampling_ratio)
    torch.testing.assert_close(out.double(), _naive(x, rois, (3, 2), 0.5, sampling_ratio),
                               atol=1e-5, rtol=1e-5)  # fmt: skip


def test_zero_angle_equals_aligned_roi_align():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 16, 16, generator=gen)
    cxcywh = torch.tensor([[20.0, 14.0, 18.0, 9.0], [8.0, 30.0, 6.0, 12.0]])
    rotated = torch.cat([torch.zeros(2, 1), cxcywh, torch.zeros(2, 1)], dim=1)
    boxes = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    axis = torch.cat([torch.zeros(2, 1), boxes], dim=1)
    torch.testing.assert_close(
        roi_align_rotated(x, rotated, 5, 0.5, 0), roi_align(x, axis, 5, 0.5, 0, True),
        atol=1e-5, rtol=1e-5,
    )  # fmt: skip


def test_half_turn_flips_the_output():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 12, 12, generator=gen)
    rois = torch.tensor([[0, 6.0, 5.5, 7.0, 5.0, 0.0]])
    turned = rois.clone()
    turned[0, 5] = 180.0
    a = roi_align_rotated(x, rois, (4, 3), 1.0, 2)
    b = roi_align_rotated(x, turned, (4, 3), 1.0, 2)
    torch.testing.assert_close(b, a.flip(-1, -2), atol=1e-5, rtol=1e-5)


def test_constant_map_and_empty_set():
    x = torch.full((1, 3, 8, 8), -2.0)
    out = roi_align_rotated(x, torch.tensor([[0, 4.0, 4.0, 5.0, 3.0, 37.0]]), 3, 1.0, 0)
    torch.testing.assert_close(out, torch.full_like(out, -2.0))
    assert roi_align_rotated(x, torch.zeros(0, 6), (7, 5), 1.0, 0).shape == (0, 3, 7, 5)


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck(sampling_ratio):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    rois = torch.tensor(
        [[0, 3.1, 3.3, 4.2, 3.6, 23.0], [1, 2.7, 4.1, 6.3, 2.2, -71.0]], dtype=torch.float64
    )
    assert torch.autograd.gradcheck(
        lambda t: roi_align_rotated(t, rois, (2, 2), 0.9, sampling_ratio), (x,)
    )


def test_half_precision_and_errors():
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 4.0, 4.0, 5.0, 3.0, 10.0]])
    out = ROIAlignRotated(2, 1.0, 0)(x.half(), rois.half())
    assert out.dtype == torch.float16
    ref = roi_align_rotated(x.half().float(), rois.half().float(), 2, 1.0, 0)
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="non-negative"):
        roi_align_rotated(x, torch.tensor([[0, 4.0, 4.0, -1.0, 3.0, 0.0]]), 2, 1.0, 0)
    with pytest.raises(ValueError, match=r"\(K, 6\)"):
        roi_align_rotated(x, torch.zeros(2, 5), 2, 1.0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, 20, 24, generator=gen)
    rois = torch.cat(
        [
            torch.randint(0, 2, (30, 1), generator=gen).float(),
            torch.rand(30, 2, generator=gen) * 90,
            torch.rand(30, 2, generator=gen) * 60 + 1,
            torch.rand(30, 1, generator=gen) * 360 - 180,
        ],
        dim=1,
    )
    cpu = roi_align_rotated(x, rois, 7, 0.25, 0)
    gpu = roi_align_rotated(x.cuda(), rois.cuda(), 7, 0.25, 0)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


def test_tap_chunks_give_the_same_result(monkeypatch):
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 2, 16, 16, generator=gen)
    rois = torch.cat(
        [
            torch.zeros(12, 1),
            torch.rand(12, 2, generator=gen) * 30,
            torch.rand(12, 2, generator=gen) * 20 + 1,
            torch.rand(12, 1, generator=gen) * 180,
        ],
        dim=1,
    )
    whole = roi_align_rotated(x, rois, 3, 0.5, 0)
    monkeypatch.setattr(importlib.import_module("torchdet.layers.roi_align"), "MAX_TAPS", 200)
    torch.testing.assert_close(roi_align_rotated(x, rois, 3, 0.5, 0), whole)

"""RoIAlign: Detectron2 parity, hand-computed values, a loop reference, gradients, dtypes."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from torchdet.layers import ROIAlign, roi_align


def _naive_roi_align(x, rois, out_hw, scale, sampling_ratio, aligned):
    """Straight transcription of the reference kernel's loops (slow, float64)."""
    x = x.double()
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = torch.zeros(len(rois), c, oh, ow, dtype=torch.float64)

    def bilinear(img, y, xx):
        if y < -1.0 or y > h or xx < -1.0 or xx > w:
            return torch.zeros(c, dtype=torch.float64)
        y, xx = max(y, 0.0), max(xx, 0.0)
        y0, x0 = int(y), int(xx)
        if y0 >= h - 1:
            y0 = y1 = h - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= w - 1:
            x0 = x1 = w - 1
            xx = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, xx - x0
        hy, hx = 1 - ly, 1 - lx
        return (
            hy * hx * img[:, y0, x0]
            + hy * lx * img[:, y0, x1]
            + ly * hx * img[:, y1, x0]
            + ly * lx * img[:, y1, x1]
        )

    off = 0.5 if aligned else 0.0
    for k, r in enumerate(rois.double().tolist()):
        b = int(r[0])
        sx, sy = r[1] * scale - off, r[2] * scale - off
        rw, rh = r[3] * scale - off - sx, r[4] * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / oh), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / ow), 0)
        count = max(gh * gw, 1)
        for p in range(oh):
            for q in range(ow):
                acc = torch.zeros(c, dtype=torch.float64)
                for iy in range(gh):
                    y = sy + p * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = sx + q * bw + (ix + 0.5) * bw / gw
                        acc += bilinear(x[b], y, xx)
                out[k, :, p, q] = acc / count
    return out


def _random_rois(k, n, h, w, scale, gen):
    xy = torch.rand(k, 2, generator=gen) * torch.tensor([w, h]) / scale
    wh = torch.rand(k, 2, generator=gen) * torch.tensor([w, h]) / scale * 0.6
    boxes = torch.cat([xy - wh / 4, xy + wh], dim=1)
    batch = torch.randint(0, n, (k, 1), generator=gen).float()
    return torch.cat([batch, boxes], dim=1)


def test_parity_with_detectron2(ops_cases):
    names = [name for name in ops_cases if name.startswith("roi_align_c")]
    if not names:
        pytest.skip("ops.pt has no roi_align_* case")
    for name in names:
        case = ops_cases[name]
        args = case["args"]
        out = roi_align(
            case["inputs"]["input"],
            case["inputs"]["rois"],
            args["output_size"],
            args["spatial_scale"],
            args["sampling_ratio"],
            args["aligned"],
        )
        assert out.shape == case["output"].shape, name
        assert (out - case["output"]).abs().max().item() <= 1e-4, name


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2, 3])
def test_matches_loop_reference(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 11, generator=gen)
    rois = _random_rois(12, 2, 9, 11, 0.5, gen)
    # Awkward boxes: fully outside, crossing the border, degenerate, reversed, tiny.
    extra = torch.tensor(
        [
            [0, -30.0, -30.0, -20.0, -10.0],
            [1, -5.0, 3.0, 8.0, 30.0],
            [0, 4.0, 4.0, 4.0, 4.0],
            [1, 10.0, 10.0, 6.0, 7.0],
            [0, 3.3, 5.1, 3.9, 5.4],
            [1, 0.0, 0.0, 22.0, 18.0],
        ]
    )
    rois = torch.cat([rois, extra])
    out = roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
    ref = _naive_roi_align(x, rois, (3, 4), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_empty_rois():
    x = torch.randn(2, 5, 8, 8)
    assert roi_align(x, torch.zeros(0, 5), 7, 1.0, 0, True).shape == (0, 5, 7, 7)
    layer = ROIAlign((3, 2), 0.25, 2)
    assert layer(x, [torch.zeros(0, 4), torch.zeros(0, 4)]).shape == (0, 5, 3, 2)


def test_constant_map_gives_the_constant():
    x = torch.full((1, 2, 10, 12), 3.25)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 7.5], [0, 0.0, 0.0, 12.0, 10.0]])
    for aligned in (True, False):
        out = roi_align(x, rois, 5, 1.0, 0, aligned)
        torch.testing.assert_close(out, torch.full_like(out, 3.25))


def test_linear_ramp_gives_mean_sample_coordinate():
    # f(y, x) = x: bilinear interpolation is exact, so a bin's value is the mean of its samples'
    # x.  aligned=True, box x in [1, 5] -> [0.5, 4.5] in pixel coordinates, 2 bins of width 2,
    # 2 samples per bin at 1.0, 2.0 and 3.0, 4.0.
    ramp_x = torch.arange(8.0).repeat(6, 1)[None, None]
    out = roi_align(ramp_x, torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]]), 2, 1.0, 2, True)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.5, 3.5], [1.5, 3.5]]))
    # Legacy (aligned=False): no shift, box [1, 5] -> samples 1.5, 2.5 | 3.5, 4.5.
    out = roi_align(ramp_x, torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]]), 2, 1.0, 2, False)
    torch.testing.assert_close(out[0, 0], torch.tensor([[2.0, 4.0], [2.0, 4.0]]))
    # Half a feature pixel (spatial_scale 0.5) on a y ramp: y in [1, 1.5], samples 1.125, 1.375.
    ramp_y = torch.arange(6.0)[:, None].repeat(1, 8)[None, None]
    out = roi_align(ramp_y, torch.tensor([[0, 2.0, 3.0, 4.0, 4.0]]), 1, 0.5, 2, True)
    torch.testing.assert_close(out[0, 0, 0, 0], torch.tensor(1.25))


def test_boxes_outside_the_image():
    x = torch.ones(1, 1, 4, 4)
    # Entirely outside: every sample is beyond the -1 / H margin -> 0.
    far = roi_align(x, torch.tensor([[0, 20.0, 20.0, 30.0, 30.0]]), 2, 1.0, 2, True)
    assert torch.equal(far, torch.zeros_like(far))
    # x samples at -2 (dropped) and 2 (kept); y samples at 1 and 3: half the samples count.
    half = roi_align(x, torch.tensor([[0, -4.0, 0.0, 4.0, 4.0]]), 1, 1.0, 2, False)
    torch.testing.assert_close(half, torch.full_like(half, 0.5))
    # Samples in [-1, 0) and (H - 1, H] are clamped to the border pixel and keep full weight.
    # Here x samples at -0.375, 2.875 and y samples at 3.0, 4.0.
    edge = roi_align(x, torch.tensor([[0, -2.0, 2.5, 4.5, 4.5]]), 1, 1.0, 2, False)
    torch.testing.assert_close(edge, torch.ones_like(edge))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    rois = torch.tensor(
        [[0, 0.3, 0.7, 9.1, 8.2], [1, 2.2, 1.1, 5.9, 11.3], [1, -2.0, 3.0, 4.4, 7.7]],
        dtype=torch.float64,
    )
    assert torch.autograd.gradcheck(
        lambda t: roi_align(t, rois, (2, 3), 0.6, sampling_ratio, aligned), (x,)
    )


def test_backward_of_a_single_sample_is_its_bilinear_weights():
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    # aligned=False, 1 bin, 1 sample: at the box centre (1.25, 2.5) in pixels.
    out = roi_align(x, torch.tensor([[0, 2.0, 0.5, 3.0, 2.0]]), 1, 1.0, 1, False)
    out.sum().backward()
    expected = torch.zeros(4, 4)
    expected[1, 2], expected[1, 3], expected[2, 2], expected[2, 3] = 0.375, 0.375, 0.125, 0.125
    torch.testing.assert_close(x.grad[0, 0], expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input(dtype):
    x = torch.randn(1, 4, 12, 12)
    rois = torch.tensor([[0, 1.0, 1.0, 20.0, 17.0]])
    out = roi_align(x.to(dtype), rois.to(dtype), 4, 0.5, 0, True)
    assert out.dtype == dtype
    ref = roi_align(x.to(dtype).float(), rois.to(dtype).float(), 4, 0.5, 0, True)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_module_accepts_list_of_boxes_and_box_objects():
    class _Boxes:
        def __init__(self, t):
            self.tensor = t

    x = torch.randn(2, 3, 10, 10)
    b0 = torch.tensor([[1.0, 1.0, 8.0, 9.0]])
    b1 = torch.tensor([[0.0, 2.0, 5.0, 5.0], [3.0, 3.0, 9.0, 7.0]])
    layer = ROIAlign(3, 1.0, 0)
    as_tensor = layer(x, torch.cat([torch.cat([torch.zeros(1, 1), b0], 1),
                                    torch.cat([torch.ones(2, 1), b1], 1)]))  # fmt: skip
    torch.testing.assert_close(layer(x, [b0, b1]), as_tensor)
    torch.testing.assert_close(layer(x, [_Boxes(b0), _Boxes(b1)]), as_tensor)
    assert "aligned=True" in repr(layer)


def test_bad_inputs_raise():
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(ValueError, match="rois"):
        roi_align(x, torch.zeros(3, 4), 2, 1.0, 0, True)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(x, torch.tensor([[1, 0.0, 0.0, 2.0, 2.0]]), 2, 1.0, 0, True)
    with pytest.raises(ValueError, match="input"):
        roi_align(x[0], torch.zeros(1, 5), 2, 1.0, 0, True)
    with pytest.raises(TypeError, match="output_size"):
        ROIAlign("7", 1.0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("aligned", [True, False])
def test_cuda_matches_cpu(aligned):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 8, 30, 40, generator=gen)
    rois = _random_rois(50, 2, 30, 40, 0.25, gen)
    rois[:20, 1:] = rois[:20, 1:].round()  # exact bin-size ratios: ceil() must agree on both
    for sampling_ratio in (0, 2):
        cpu = roi_align(x, rois, (7, 5), 0.25, sampling_ratio, aligned)
        gpu = roi_align(x.cuda(), rois.cuda(), (7, 5), 0.25, sampling_ratio, aligned)
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


def test_tap_chunks_give_the_same_result(monkeypatch):
    module = importlib.import_module("torchdet.layers.roi_align")
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 20, 24, generator=gen)
    rois = _random_rois(30, 2, 20, 24, 0.5, gen)
    whole = roi_align(x, rois, 4, 0.5, 0, True)
    monkeypatch.setattr(module, "MAX_TAPS", 100)  # a few RoIs per chunk, big RoIs alone
    torch.testing.assert_close(roi_align(x, rois, 4, 0.5, 0, True), whole)


def test_roi_chunks_split_consecutively_and_cover_everything():
    module = importlib.import_module("torchdet.layers.roi_align")
    parts = module.roi_chunks(torch.tensor([3, 10, 2, 2, 7, 0, 1]), 5)
    assert parts[0].start == 0 and parts[-1].stop == 7
    assert all(a.stop == b.start for a, b in zip(parts[:-1], parts[1:]))
    assert all(p.stop > p.start for p in parts)
    # Cumulative taps 3, 13, 15, 17, 24, 24, 25: last taps in blocks 0, 2, 2, 3, 4, 4, 4 of 5.
    assert [(p.start, p.stop) for p in parts] == [(0, 1), (1, 3), (3, 4), (4, 7)]
    assert module.roi_chunks(torch.tensor([1, 2]), 5) == [slice(0, 2)]

"""Traceable NMS / RoIAlign (``torchdet.layers.tracing``): the scripted forms equal the eager
kernels, traced programs stay correct for other box counts and sizes, and the ONNX forms run in
ONNX Runtime with the eager results."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchdet.layers import batched_nms, nms, roi_align
from torchdet.layers.tracing import _scripted


def _boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def _rois(k: int, generator: torch.Generator, batch: int = 2) -> torch.Tensor:
    index = torch.randint(0, batch, (k, 1), generator=generator).float()
    return torch.cat([index, _boxes(k, generator, 120.0)], dim=1)


@pytest.mark.parametrize("n", [0, 1, 7, 600])
def test_scripted_nms_equals_eager(n):
    g = torch.Generator().manual_seed(n)
    boxes, scores = _boxes(n, g), torch.rand(n, generator=g)
    scores[: n // 3] = scores[n // 3 : 2 * (n // 3)]  # ties: order must stay stable
    for t in (0.3, 0.5, 0.7):
        expected = nms(boxes, scores, t)
        assert torch.equal(_scripted("_nms_greedy")(boxes, scores, t), expected)


def test_scripted_nms_hand_case():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (0.95) suppresses 0 (IoU 1) and 1 (IoU 9/11 > 0.5); box 2 is disjoint.
    assert _scripted("_nms_greedy")(boxes, scores, 0.5).tolist() == [3, 2]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [0, 2])
def test_scripted_roi_align_equals_eager(aligned, ratio):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 17, 23, generator=g)
    rois = _rois(40, g)
    rois[0, 1:] = torch.tensor([-30.0, -30.0, -10.0, -5.0])  # fully outside
    rois[1, 1:] = torch.tensor([150.0, 100.0, 190.0, 140.0])  # beyond the far border
    expected = roi_align(x, rois, (7, 6), 1 / 8, ratio, aligned)
    got = _scripted("_roi_align_separable")(x, rois, 7, 6, 1 / 8, ratio, aligned)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    empty = _scripted("_roi_align_separable")(x, rois[:0], 7, 6, 1 / 8, ratio, aligned)
    assert empty.shape == (0, 5, 7, 6)


class _NmsThenPool(nn.Module):
    def forward(self, features, boxes, scores, classes):
        keep = batched_nms(boxes, scores, classes, 0.5)
        kept = boxes[keep]
        rois = torch.cat([torch.zeros_like(kept[:, :1]), kept], dim=1)
        return keep, roi_align(features, rois, (4, 4), 0.25, 0, True)


def _inputs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, 3, 30, 40, generator=g),
        _boxes(n, g),
        torch.rand(n, generator=g),
        torch.randint(0, 3, (n,), generator=g),
    )


def test_traced_program_generalises():
    module = _NmsThenPool()
    traced = torch.jit.trace(module, _inputs(50, 0), check_trace=False)
    for n, seed in ((80, 1), (5, 2)):
        args = _inputs(n, seed)
        keep, pooled = traced(*args)
        ref_keep, ref_pooled = module(*args)
        assert torch.equal(keep, ref_keep)
        torch.testing.assert_close(pooled, ref_pooled, atol=1e-5, rtol=1e-5)


def test_onnx_ops_run_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional test dependency")
    from torchdet.layers.tracing import register_onnx_symbolics

    register_onnx_symbolics(17)
    path = tmp_path / "ops.onnx"
    torch.onnx.export(
        _NmsThenPool(),
        _inputs(50, 0),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["features", "boxes", "scores", "classes"],
        dynamic_axes={"boxes": {0: "n"}, "scores": {0: "n"}, "classes": {0: "n"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = ["features", "boxes", "scores", "classes"]
    for n, seed in ((80, 1), (5, 2)):
        args = _inputs(n, seed)
        keep, pooled = session.run(None, {k: v.numpy() for k, v in zip(names, args)})
        ref_keep, ref_pooled = _NmsThenPool()(*args)
        assert keep.tolist() == ref_keep.tolist()
        torch.testing.assert_close(torch.from_numpy(pooled), ref_pooled, atol=1e-4, rtol=1e-4)


def test_register_onnx_symbolics_needs_opset_16():
    from torchdet.layers.tracing import register_onnx_symbolics

    with pytest.raises(ValueError, match="opset >= 16"):
        register_onnx_symbolics(13)

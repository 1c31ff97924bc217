"""Tests for ``torchdet.structures.keypoints``: Keypoints, heatmap encoding and decoding."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from torchdet.structures import Boxes, Keypoints, heatmaps_to_keypoints


def _loop_reference(maps: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Straightforward per-ROI, per-keypoint decoding following Detectron2's description."""
    out = torch.zeros(maps.shape[0], maps.shape[1], 4)
    for i in range(maps.shape[0]):
        x0, y0, x1, y1 = rois[i].tolist()
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        wc, hc = math.ceil(w), math.ceil(h)
        up = F.interpolate(maps[i : i + 1], size=(hc, wc), mode="bicubic", align_corners=False)[0]
        for k in range(maps.shape[1]):
            flat = up[k].reshape(-1)
            pos = int(flat.argmax())
            yi, xi = divmod(pos, wc)
            peak = flat[pos]
            score = torch.exp(up[k, yi, xi] - peak) / torch.exp(maps[i, k] - peak).sum()
            out[i, k] = torch.tensor(
                [(xi + 0.5) * (w / wc) + x0, (yi + 0.5) * (h / hc) + y0, peak.item(), score.item()]
            )
    return out


def test_keypoints_container():
    kp = Keypoints([[[1.0, 2.0, 2.0], [3.0, 4.0, 0.0]]])
    assert kp.tensor.shape == (1, 2, 3) and kp.tensor.dtype == torch.float32
    assert len(kp) == 1 and kp.device == torch.device("cpu")
    with pytest.raises(ValueError, match=r"Tensor\[N, K, 3\]"):
        Keypoints(torch.zeros(2, 3))
    many = Keypoints.cat([kp, Keypoints(torch.ones(2, 2, 3))])
    assert len(many) == 3
    assert many[0].tensor.shape == (1, 2, 3)
    assert len(many[1:]) == 2 and len(many[torch.tensor([True, False, True])]) == 2
    assert many.to("cpu").tensor.equal(many.tensor)
    assert repr(many) == "Keypoints(num_instances=3)"
    with pytest.raises(ValueError, match="non-empty"):
        Keypoints.cat([])


def test_to_heatmap_hand_computed():
    kp = Keypoints(
        torch.tensor(
            [
                [
                    [1.0, 1.0, 2.0],  # cell (0, 0)
                    [7.9, 3.0, 2.0],  # x cell 3, y cell 1 -> 1 * 4 + 3
                    [8.0, 8.0, 2.0],  # exactly on the far edges -> last cell (3, 3)
                    [5.0, 5.0, 0.0],  # not visible
                    [9.0, 1.0, 2.0],  # outside the box
                    [-0.1, 1.0, 1.0],  # outside (floor gives -1)
                ]
            ]
        )
    )
    heatmaps, valid = kp.to_heatmap(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), 4)
    assert heatmaps.dtype == torch.int64 and valid.dtype == torch.int64
    assert valid.tolist() == [[1, 1, 1, 0, 0, 0]]
    assert heatmaps.tolist() == [[0, 7, 15, 0, 0, 0]]
    from_boxes = kp.to_heatmap(Boxes(torch.tensor([[0.0, 0.0, 8.0, 8.0]])), 4)
    assert from_boxes[0].equal(heatmaps) and from_boxes[1].equal(valid)
    # empty inputs
    h, v = Keypoints(torch.zeros(0, 6, 3)).to_heatmap(torch.zeros(0, 4), 56)
    assert h.numel() == 0 and v.numel() == 0


def test_heatmaps_to_keypoints_identity_resize():
    # ROI of the heatmap's own size: the resize is the identity, the peak cell is the answer
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 0, 2, 5] = 3.0
    maps[0, 1, 7, 0] = 1.0
    out = heatmaps_to_keypoints(maps, torch.tensor([[10.0, 20.0, 18.0, 28.0]]))
    assert out.shape == (1, 2, 4)
    torch.testing.assert_close(out[0, :, :2], torch.tensor([[15.5, 22.5], [10.5, 27.5]]))
    torch.testing.assert_close(out[0, :, 2], torch.tensor([3.0, 1.0]))
    # softmax score at the peak, over the 8 x 8 map
    expected = torch.tensor([1 / (1 + 63 * math.exp(-3.0)), 1 / (1 + 63 * math.exp(-1.0))])
    torch.testing.assert_close(out[0, :, 3], expected)


def test_heatmap_round_trip_through_an_upsampled_roi():
    # A smooth peak at heatmap coordinate (5.25, 2.25) of an 8 x 8 map over a 16 x 16 ROI: the
    # 2x upsampled map peaks at output pixel (11, 5), whose centre maps back to that point.
    s = 8
    yy, xx = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    peak = -((xx - 5.25) ** 2 + (yy - 2.25) ** 2) / 2.0
    maps = peak[None, None]
    rois = torch.tensor([[100.0, 50.0, 116.0, 66.0]])
    out = heatmaps_to_keypoints(maps, rois)
    torch.testing.assert_close(out[0, 0, :2], torch.tensor([100.0 + 11.5, 50.0 + 5.5]))
    # encoding the decoded keypoint again lands in the cell of the peak
    kp = Keypoints(torch.cat([out[:, :, :2], torch.full((1, 1, 1), 2.0)], dim=2))
    heatmaps, valid = kp.to_heatmap(rois, s)
    assert valid.tolist() == [[1]]
    assert heatmaps.tolist() == [[2 * s + 5]]


def test_heatmaps_to_keypoints_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 3, 14, 14, generator=g) * 3
    xy = torch.rand(5, 2, generator=g) * 100
    wh = torch.tensor([[20.3, 7.7], [0.4, 30.0], [14.0, 14.0], [55.5, 41.2], [3.0, 1.0]])
    rois = torch.cat([xy, xy + wh], dim=1)
    out = heatmaps_to_keypoints(maps, rois)
    torch.testing.assert_close(out, _loop_reference(maps, rois), rtol=1e-5, atol=1e-5)
    # a ROI narrower than 1 px is treated as 1 px wide
    assert (out[1, :, 0] - rois[1, 0] - 0.5).abs().max() < 1e-5


def test_heatmaps_to_keypoints_empty_and_bad_shapes():
    assert heatmaps_to_keypoints(torch.zeros(0, 17, 56, 56), torch.zeros(0, 4)).shape == (0, 17, 4)
    with pytest.raises(ValueError, match="rois"):
        heatmaps_to_keypoints(torch.zeros(2, 3, 4, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="maps"):
        heatmaps_to_keypoints(torch.zeros(2, 4, 4), torch.zeros(2, 4))

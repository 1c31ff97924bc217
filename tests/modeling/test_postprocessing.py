"""Tests of torchdet.modeling.postprocessing."""

from __future__ import annotations

import torch

from torchdet.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from torchdet.structures import Boxes, Instances


def test_detector_postprocess_scales_clips_and_filters():
    r = Instances((50, 100))
    r.pred_boxes = Boxes(
        torch.tensor(
            [
                [10.0, 5.0, 20.0, 25.0],
                [90.0, 40.0, 120.0, 60.0],  # clipped to the image
                [110.0, 0.0, 130.0, 10.0],  # fully outside: empty after clipping, removed
            ]
        )
    )
    r.scores = torch.tensor([0.9, 0.8, 0.7])
    r.pred_keypoints = torch.tensor([[[10.0, 5.0, 1.0]], [[95.0, 45.0, 0.5]], [[0.0, 0.0, 0.0]]])
    out = detector_postprocess(r, 100, 300)  # scale x 3, y 2
    assert out.image_size == (100, 300)
    assert out.pred_boxes.tensor.tolist() == [[30.0, 10.0, 60.0, 50.0], [270.0, 80.0, 300.0, 100.0]]
    assert torch.equal(out.scores, torch.tensor([0.9, 0.8]))
    assert out.pred_keypoints[:, 0].tolist() == [[30.0, 10.0, 1.0], [285.0, 90.0, 0.5]]


def test_detector_postprocess_pastes_masks():
    r = Instances((20, 20))
    r.pred_boxes = Boxes(torch.tensor([[2.0, 4.0, 10.0, 8.0]]))
    r.pred_masks = torch.ones(1, 1, 28, 28)
    out = detector_postprocess(r, 40, 40)
    masks = out.pred_masks
    assert masks.shape == (1, 40, 40) and masks.dtype == torch.bool
    expected = torch.zeros(40, 40, dtype=torch.bool)
    expected[8:16, 4:20] = True  # the box scaled by 2: x 4..20, y 8..16
    assert torch.equal(masks[0], expected)


def test_detector_postprocess_proposals_and_empty():
    r = Instances((10, 10))
    r.proposal_boxes = Boxes(torch.tensor([[1.0, 1.0, 4.0, 4.0]]))
    r.objectness_logits = torch.tensor([2.0])
    out = detector_postprocess(r, 5, 5)
    assert out.proposal_boxes.tensor.tolist() == [[0.5, 0.5, 2.0, 2.0]]
    empty = Instances((10, 10))
    empty.pred_boxes = Boxes(torch.zeros(0, 4))
    assert len(detector_postprocess(empty, 20, 20)) == 0


def test_sem_seg_postprocess_crops_padding_then_resizes():
    result = torch.full((2, 8, 8), 100.0)  # padding holds 100
    result[0, :4, :6] = 1.0
    result[1, :4, :6] = -1.0
    out = sem_seg_postprocess(result, (4, 6), 8, 12)
    assert out.shape == (2, 8, 12)
    assert torch.allclose(out[0], torch.ones(8, 12)) and torch.allclose(out[1], -torch.ones(8, 12))


def test_detector_postprocess_tensor_sizes():
    """Output sizes given as tensors (as when tracing) give the same result."""
    r = Instances((10, 20))
    r.pred_boxes = Boxes(torch.tensor([[2.0, 2.0, 6.0, 8.0]]))
    out = detector_postprocess(r, torch.tensor(20), torch.tensor(60))
    assert out.pred_boxes.tensor.tolist() == [[6.0, 4.0, 18.0, 16.0]]

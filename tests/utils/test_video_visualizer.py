"""VideoVisualizer: colours stay with an object across frames."""

from __future__ import annotations

import numpy as np
import torch

from torchdet.structures import Boxes, Instances
from torchdet.tracking import BBoxIOUTracker
from torchdet.utils.video_visualizer import VideoVisualizer


def preds(boxes, classes) -> Instances:
    inst = Instances((100, 120))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.pred_classes = torch.tensor(classes)
    inst.scores = torch.full((len(classes),), 0.9)
    masks = torch.zeros(len(classes), 100, 120, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, int(y0) : int(y1), int(x0) : int(x1)] = True
    inst.pred_masks = masks
    return inst


def mask_colour(img: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    return img[cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3).mean(0)


def test_colour_follows_object_without_tracker():
    frame = np.full((100, 120, 3), 128, dtype=np.uint8)
    vv = VideoVisualizer({"thing_classes": ["a", "b"]})
    a1, b1 = [10, 10, 40, 40], [60, 50, 100, 90]
    out1 = vv.draw_instance_predictions(frame, preds([a1, b1], [0, 1])).get_image()
    a2, b2 = [12, 11, 42, 41], [61, 50, 101, 90]  # moved slightly, listed in another order
    out2 = vv.draw_instance_predictions(frame, preds([b2, a2], [1, 0])).get_image()
    assert np.allclose(mask_colour(out1, a1), mask_colour(out2, a2), atol=1)
    assert np.allclose(mask_colour(out1, b1), mask_colour(out2, b2), atol=1)
    assert (np.abs(mask_colour(out2, a2) - 128) > 5).any()  # it is tinted at all


def test_colour_follows_tracker_ids_and_period_threshold():
    # Colours are drawn from numpy's global generator; the palette has greys that would blend
    # into this grey frame, so fix the draw instead of depending on earlier tests.
    np.random.seed(3)
    frame = np.full((100, 120, 3), 128, dtype=np.uint8)
    tracker = BBoxIOUTracker(video_height=100, video_width=120)
    vv = VideoVisualizer({"thing_classes": ["a", "b"], "period_threshold": 1})
    a1 = [10, 10, 40, 40]
    out1 = vv.draw_instance_predictions(frame, tracker.update(preds([a1], [0]))).get_image()
    # period 1 is not above the threshold: not drawn yet
    assert (out1 == 128).all()
    a2, a3 = [11, 10, 41, 40], [12, 10, 42, 40]
    out2 = vv.draw_instance_predictions(frame, tracker.update(preds([a2], [0]))).get_image()
    out3 = vv.draw_instance_predictions(frame, tracker.update(preds([a3], [0]))).get_image()
    c2, c3 = mask_colour(out2, a2), mask_colour(out3, a3)
    assert (np.abs(c2 - 128) > 5).any() and np.allclose(c2, c3, atol=1)


def test_empty_frame_unchanged():
    frame = np.full((100, 120, 3), 7, dtype=np.uint8)
    out = VideoVisualizer(None).draw_instance_predictions(frame, preds([], []))
    assert (out.get_image() == 7).all()

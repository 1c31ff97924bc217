"""Trackers: identities across frames, lost-track handling, Hungarian vs greedy matching."""

from __future__ import annotations

import pytest
import torch

from torchdet.config import CfgNode
from torchdet.structures import Boxes, Instances
from torchdet.tracking import (
    BBoxIOUTracker,
    IOUWeightedHungarianBBoxIOUTracker,
    VanillaHungarianBBoxIOUTracker,
    build_tracker_head,
    create_prediction_pairs,
)

ALL = [BBoxIOUTracker, VanillaHungarianBBoxIOUTracker, IOUWeightedHungarianBBoxIOUTracker]


def frame(boxes, classes=None, with_masks=False) -> Instances:
    inst = Instances((100, 100))
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.pred_boxes = Boxes(b)
    inst.pred_classes = torch.tensor(classes if classes is not None else [0] * len(b))
    inst.scores = torch.full((len(b),), 0.9)
    if with_masks:
        inst.pred_masks = torch.zeros(len(b), 100, 100, dtype=torch.bool)
    return inst


@pytest.mark.parametrize("cls", ALL)
def test_ids_follow_moving_boxes(cls):
    if cls is not BBoxIOUTracker:
        pytest.importorskip("scipy")
    t = cls(video_height=100, video_width=100)
    out1 = t.update(frame([[0, 0, 20, 20], [50, 50, 80, 80]]))
    assert out1.ID == [0, 1] and out1.ID_period == [1, 1]
    # both boxes move a little, listed in the other order; a new box appears
    out2 = t.update(frame([[52, 52, 82, 82], [1, 1, 21, 21], [0, 80, 10, 90]]))
    assert out2.ID == [1, 0, 2]
    assert out2.ID_period == [2, 2, 1]
    assert out2.lost_frame_count == [0, 0, 0]


@pytest.mark.parametrize("cls", ALL)
def test_lost_track_kept_for_max_lost_frame_count(cls):
    if cls is not BBoxIOUTracker:
        pytest.importorskip("scipy")
    t = cls(video_height=100, video_width=100, max_lost_frame_count=1, min_instance_period=1)
    t.update(frame([[0, 0, 30, 30]], with_masks=True))
    t.update(frame([[0, 0, 30, 30]], with_masks=True))  # period 2 > min_instance_period
    out = t.update(frame([[60, 60, 90, 90]], with_masks=True))
    # the new box gets id 1, the missed track 0 is carried at its last box
    assert out.ID == [1, 0] and out.lost_frame_count == [0, 1]
    assert out.pred_boxes.tensor[1].tolist() == [0, 0, 30, 30]
    assert out.pred_masks.shape == (2, 100, 100)
    out = t.update(frame([[60, 60, 90, 90]], with_masks=True))
    assert out.ID == [1]  # lost for max_lost_frame_count frames: dropped


def test_no_match_below_iou_threshold_hungarian():
    pytest.importorskip("scipy")
    t = VanillaHungarianBBoxIOUTracker(video_height=100, video_width=100)
    t.update(frame([[0, 0, 10, 10]]))
    out = t.update(frame([[50, 50, 60, 60]]))  # IoU 0: the forced assignment is dropped
    assert out.ID == [1]


def test_iou_weighted_prefers_higher_iou():
    pytest.importorskip("scipy")
    prev = [[0, 0, 10, 10]]
    cur = [[0, 0, 10, 12], [0, 0, 10, 10]]  # IoU 0.83 and 1.0
    t = IOUWeightedHungarianBBoxIOUTracker(video_height=100, video_width=100)
    t.update(frame(prev))
    assert t.update(frame(cur)).ID == [1, 0]
    g = BBoxIOUTracker(video_height=100, video_width=100)
    g.update(frame(prev))
    assert g.update(frame(cur)).ID == [1, 0]  # greedy: highest IoU first


def test_empty_frames():
    t = BBoxIOUTracker(video_height=100, video_width=100)
    assert t.update(frame([])).ID == []
    assert t.update(frame([[0, 0, 10, 10]])).ID == [0]
    assert len(t.update(frame([]))) == 0


def test_create_prediction_pairs_sorted():
    prev = frame([[0, 0, 10, 10], [0, 0, 20, 20]])
    prev.ID, prev.ID_period = [5, 6], [3, 1]
    iou = torch.tensor([[0.6, 0.9], [0.2, 0.55]])
    pairs = create_prediction_pairs(frame([[0, 0, 1, 1], [0, 0, 1, 1]]), prev, iou, 0.5)
    assert [(p["idx"], p["prev_idx"], p["prev_id"]) for p in pairs] == [
        (0, 1, 6),
        (0, 0, 5),
        (1, 1, 6),
    ]


def test_build_from_config_and_bad_input():
    cfg = CfgNode(
        {"TRACKER_HEADS": {"TRACKER_NAME": "BBoxIOUTracker", "VIDEO_HEIGHT": 50, "VIDEO_WIDTH": 60}}
    )
    t = build_tracker_head(cfg)
    assert isinstance(t, BBoxIOUTracker) and t._video_width == 60
    with pytest.raises(KeyError, match="TRACKER_NAME"):
        build_tracker_head(CfgNode({}))
    with pytest.raises(TypeError, match="Instances"):
        t.update([1, 2])
    with pytest.raises(ValueError, match="video size"):
        BBoxIOUTracker(video_height=0, video_width=10)

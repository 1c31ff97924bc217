"""Multi-object trackers that give detections identities across video frames
(Detectron2's ``detectron2.tracking``): ``BBoxIOUTracker`` (greedy IoU matching) and two
Hungarian variants (``scipy.optimize.linear_sum_assignment``; scipy is imported only when they
run).

Each tracker's ``update(instances)`` takes one frame's predictions (``pred_boxes``,
``pred_classes``, ``scores``, optionally ``pred_masks``) and returns them with three list fields:
``ID`` (the track id), ``ID_period`` (frames the track has been seen in a row) and
``lost_frame_count``, plus the still-alive tracks missed in this frame (kept at their last box
for up to ``max_lost_frame_count`` frames).
"""

from .base_tracker import TRACKER_HEADS_REGISTRY, BaseTracker, build_tracker_head
from .bbox_iou_tracker import BBoxIOUTracker
from .hungarian_tracker import BaseHungarianTracker
from .iou_weighted_hungarian_bbox_iou_tracker import IOUWeightedHungarianBBoxIOUTracker
from .utils import LARGE_COST_VALUE, create_prediction_pairs
from .vanilla_hungarian_bbox_iou_tracker import VanillaHungarianBBoxIOUTracker

__all__ = [
    "LARGE_COST_VALUE",
    "TRACKER_HEADS_REGISTRY",
    "BBoxIOUTracker",
    "BaseHungarianTracker",
    "BaseTracker",
    "IOUWeightedHungarianBBoxIOUTracker",
    "VanillaHungarianBBoxIOUTracker",
    "build_tracker_head",
    "create_prediction_pairs",
]

"""Greedy IoU tracker: each current box takes the id of the previous box it overlaps most."""

from __future__ import annotations

import copy

from torchdet.config import configurable
from torchdet.structures import Instances, pairwise_iou

from .base_tracker import (
    TRACKER_HEADS_REGISTRY,
    BaseTracker,
    _check_instances,
    _tracker_args_from_config,
)
from .utils import create_prediction_pairs

__all__ = ["BBoxIOUTracker"]


@TRACKER_HEADS_REGISTRY.register()
class BBoxIOUTracker(BaseTracker):
    """Matches boxes of consecutive frames greedily, highest IoU first."""

    @configurable
    def __init__(
        self,
        *,
        video_height: int,
        video_width: int,
        max_num_instances: int = 200,
        max_lost_frame_count: int = 0,
        min_box_rel_dim: float = 0.02,
        min_instance_period: int = 1,
        track_iou_threshold: float = 0.5,
        **kwargs,
    ) -> None:
        """
        Args:
            video_height, video_width: the frame size.
            max_num_instances: the most tracks kept.
            max_lost_frame_count: frames a missed track is kept (at its last box).
            min_box_rel_dim: tracks whose box is smaller than this fraction of the frame are
                not kept when missed.
            min_instance_period: tracks seen for this many frames or fewer are not kept when
                missed.
            track_iou_threshold: the least IoU of a match.
        """
        super().__init__(**kwargs)
        if video_height <= 0 or video_width <= 0:
            raise ValueError(f"video size must be > 0, got {video_height}x{video_width}")
        self._video_height = video_height
        self._video_width = video_width
        self._max_num_instances = max_num_instances
        self._max_lost_frame_count = max_lost_frame_count
        self._min_box_rel_dim = min_box_rel_dim
        self._min_instance_period = min_instance_period
        self._track_iou_threshold = track_iou_threshold

    @classmethod
    def from_config(cls, cfg) -> dict:
        return _tracker_args_from_config(cfg)

    def update(self, instances: Instances) -> Instances:
        _check_instances(instances, type(self).__name__)
        instances = self._initialize_extra_fields(instances)
        if self._prev_instances is not None:
            iou_all = pairwise_iou(instances.pred_boxes, self._prev_instances.pred_boxes)
            pairs = create_prediction_pairs(
                instances, self._prev_instances, iou_all, self._track_iou_threshold
            )
            self._matched_idx, self._matched_ID = set(), set()
            self._untracked_prev_idx = set(range(len(self._prev_instances)))
            for pair in pairs:  # by decreasing IoU
                idx, prev_id = pair["idx"], pair["prev_id"]
                if idx in self._matched_idx or prev_id in self._matched_ID:
                    continue
                instances.ID[idx] = prev_id
                instances.ID_period[idx] = pair["prev_period"] + 1
                instances.lost_frame_count[idx] = 0
                self._matched_idx.add(idx)
                self._matched_ID.add(prev_id)
                self._untracked_prev_idx.discard(pair["prev_idx"])
            instances = self._assign_new_ids(instances, self._matched_idx)
            instances = self._merge_untracked_instances(instances, self._untracked_prev_idx)
        self._prev_instances = copy.deepcopy(instances)
        return instances

"""Trackers that match boxes of consecutive frames with the Hungarian algorithm."""

from __future__ import annotations

import copy

import numpy as np

from torchdet.config import configurable
from torchdet.structures import Instances

from .base_tracker import BaseTracker, _check_instances, _tracker_args_from_config
from .utils import LARGE_COST_VALUE

__all__ = ["BaseHungarianTracker"]


def _linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as e:  # scipy is an optional dependency
        raise ImportError(
            "the Hungarian trackers need scipy (pip install scipy); BBoxIOUTracker does not"
        ) from e
    return linear_sum_assignment(cost)


class BaseHungarianTracker(BaseTracker):
    """A tracker that minimises the total cost of ``build_cost_matrix`` over one-to-one
    matches; pairs of cost ``LARGE_COST_VALUE`` or more are never matched."""

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
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if video_height <= 0 or video_width <= 0:
            raise ValueError(f"video size must be > 0, got {video_height}x{video_width}")
        self._video_height = video_height
        self._video_width = video_width
        self._max_num_instances = max_num_instances
        self._max_lost_frame_count = max_lost_frame_count
        self._min_box_rel_dim = min_box_rel_dim
        self._min_instance_period = min_instance_period

    @classmethod
    def from_config(cls, cfg) -> dict:
        args = _tracker_args_from_config(cfg)
        args.pop("track_iou_threshold")
        return args

    def build_cost_matrix(self, instances: Instances, prev_instances: Instances) -> np.ndarray:
        """ndarray[N, M]: the cost of matching current i to previous j."""
        raise NotImplementedError

    def update(self, instances: Instances) -> Instances:
        _check_instances(instances, type(self).__name__)
        if instances.has("pred_keypoints"):
            raise NotImplementedError("the Hungarian trackers do not carry keypoints yet")
        instances = self._initialize_extra_fields(instances)
        if self._prev_instances is not None:
            cost = np.asarray(self.build_cost_matrix(instances, self._prev_instances))
            rows, cols = _linear_sum_assignment(cost)
            # the assignment is complete: drop the pairs it was forced into
            ok = cost[rows, cols] < LARGE_COST_VALUE
            rows, cols = rows[ok], cols[ok]
            for i, j in zip(rows.tolist(), cols.tolist()):
                instances.ID[i] = self._prev_instances.ID[j]
                instances.ID_period[i] = self._prev_instances.ID_period[j] + 1
                instances.lost_frame_count[i] = 0
            instances = self._assign_new_ids(instances, set(rows.tolist()))
            untracked = set(range(len(self._prev_instances))) - set(cols.tolist())
            instances = self._merge_untracked_instances(instances, untracked)
        self._prev_instances = copy.deepcopy(instances)
        return instances

"""Hungarian tracker with a 0/1 cost: any pair above the IoU threshold is as good as another."""

from __future__ import annotations

import numpy as np

from torchdet.config import configurable
from torchdet.structures import Instances, pairwise_iou

from .base_tracker import TRACKER_HEADS_REGISTRY, _tracker_args_from_config
from .hungarian_tracker import BaseHungarianTracker
from .utils import LARGE_COST_VALUE

__all__ = ["VanillaHungarianBBoxIOUTracker"]


@TRACKER_HEADS_REGISTRY.register()
class VanillaHungarianBBoxIOUTracker(BaseHungarianTracker):
    """Maximises the number of matches with IoU >= ``track_iou_threshold``."""

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
        super().__init__(
            video_height=video_height,
            video_width=video_width,
            max_num_instances=max_num_instances,
            max_lost_frame_count=max_lost_frame_count,
            min_box_rel_dim=min_box_rel_dim,
            min_instance_period=min_instance_period,
            **kwargs,
        )
        self._track_iou_threshold = track_iou_threshold

    @classmethod
    def from_config(cls, cfg) -> dict:
        return _tracker_args_from_config(cfg)

    def build_cost_matrix(self, instances: Instances, prev_instances: Instances) -> np.ndarray:
        iou = pairwise_iou(instances.pred_boxes, prev_instances.pred_boxes).numpy()
        cost = np.full(iou.shape, float(LARGE_COST_VALUE))
        return self.assign_cost_matrix_values(cost, iou >= self._track_iou_threshold, iou)

    def assign_cost_matrix_values(
        self, cost_matrix: np.ndarray, above: np.ndarray, iou: np.ndarray
    ) -> np.ndarray:
        """Cost -1 for every pair above the threshold (``above``: ndarray[N, M] bool)."""
        cost_matrix[above] = -1.0
        return cost_matrix

"""Hungarian tracker with cost -IoU: among pairs above the threshold, prefer higher IoU."""

from __future__ import annotations

import numpy as np

from .base_tracker import TRACKER_HEADS_REGISTRY
from .vanilla_hungarian_bbox_iou_tracker import VanillaHungarianBBoxIOUTracker

__all__ = ["IOUWeightedHungarianBBoxIOUTracker"]


@TRACKER_HEADS_REGISTRY.register()
class IOUWeightedHungarianBBoxIOUTracker(VanillaHungarianBBoxIOUTracker):
    """Maximises the total IoU of the matches with IoU >= ``track_iou_threshold``."""

    def assign_cost_matrix_values(
        self, cost_matrix: np.ndarray, above: np.ndarray, iou: np.ndarray
    ) -> np.ndarray:
        cost_matrix[above] = -iou[above]
        return cost_matrix

"""Helpers shared by the trackers."""

from __future__ import annotations

import numpy as np
import torch

from torchdet.structures import Instances

__all__ = ["LARGE_COST_VALUE", "create_prediction_pairs"]

#: Cost of a pair that must not be matched (IoU below the threshold).
LARGE_COST_VALUE = 100000


def create_prediction_pairs(
    instances: Instances,
    prev_instances: Instances,
    iou_all: torch.Tensor | np.ndarray,
    threshold: float = 0.5,
) -> list[dict]:
    """The (current, previous) pairs with IoU >= ``threshold``, by decreasing IoU.

    Args:
        instances: the current frame's N instances.
        prev_instances: the previous frame's M instances, with ``ID`` and ``ID_period``.
        iou_all (Tensor[N, M]): pairwise box IoU.

    Returns:
        dicts with ``idx``, ``prev_idx``, ``prev_id``, ``IoU`` and ``prev_period``.
    """
    iou = torch.as_tensor(iou_all, dtype=torch.float32).reshape(len(instances), len(prev_instances))
    idx, prev_idx = torch.nonzero(iou >= threshold, as_tuple=True)
    values = iou[idx, prev_idx]
    order = torch.argsort(values, descending=True, stable=True)
    return [
        {
            "idx": int(idx[k]),
            "prev_idx": int(prev_idx[k]),
            "prev_id": prev_instances.ID[int(prev_idx[k])],
            "IoU": float(values[k]),
            "prev_period": prev_instances.ID_period[int(prev_idx[k])],
        }
        for k in order.tolist()
    ]

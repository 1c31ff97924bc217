"""The tracker interface, its registry and its builder."""

from __future__ import annotations

from typing import Any

import torch

from torchdet.config import CfgNode, configurable
from torchdet.structures import Boxes, Instances
from torchdet.utils.registry import Registry

__all__ = ["TRACKER_HEADS_REGISTRY", "BaseTracker", "build_tracker_head"]

TRACKER_HEADS_REGISTRY = Registry("TRACKER_HEADS")
TRACKER_HEADS_REGISTRY.__doc__ = """Trackers, selected by ``cfg.TRACKER_HEADS.TRACKER_NAME``."""


class BaseTracker:
    """A tracker: ``update(instances)`` is called once per frame, in order."""

    @configurable
    def __init__(self, **kwargs: Any) -> None:
        self._prev_instances: Instances | None = None  # the previous frame's output
        self._matched_idx: set[int] = set()  # current indices matched to a track
        self._matched_ID: set[int] = set()  # track ids matched in this frame
        self._untracked_prev_idx: set[int] = set()  # previous indices not matched
        self._id_count = 0  # the next new id

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        raise NotImplementedError("Calling BaseTracker::from_config")

    def update(self, predictions: Instances) -> Instances:
        """Give ``predictions`` (one frame) identities; returns them with the ``ID``,
        ``ID_period`` and ``lost_frame_count`` fields (and kept lost tracks appended)."""
        raise NotImplementedError("Calling BaseTracker::update")

    # ------------------------------------------------------------------ shared steps
    def _initialize_extra_fields(self, instances: Instances) -> Instances:
        for name in ("ID", "ID_period", "lost_frame_count"):
            if not instances.has(name):
                instances.set(name, [None] * len(instances))
        if self._prev_instances is None:  # the first frame: everything is a new track
            instances.ID = list(range(self._id_count, self._id_count + len(instances)))
            self._id_count += len(instances)
            instances.ID_period = [1] * len(instances)
            instances.lost_frame_count = [0] * len(instances)
        return instances

    def _assign_new_ids(self, instances: Instances, matched: set[int]) -> Instances:
        for idx in sorted(set(range(len(instances))) - matched):
            instances.ID[idx] = self._id_count
            self._id_count += 1
            instances.ID_period[idx] = 1
            instances.lost_frame_count[idx] = 0
        return instances

    def _merge_untracked_instances(self, instances: Instances, untracked: set[int]) -> Instances:
        """Append the previous frame's unmatched tracks that are still alive: large enough,
        seen for more than ``min_instance_period`` frames and lost for fewer than
        ``max_lost_frame_count``."""
        prev = self._prev_instances
        keep = []
        boxes = prev.pred_boxes.tensor if len(prev) else torch.zeros(0, 4)
        for idx in sorted(untracked):
            x0, y0, x1, y1 = boxes[idx].tolist()
            if (
                (x1 - x0) / self._video_width < self._min_box_rel_dim
                or (y1 - y0) / self._video_height < self._min_box_rel_dim
                or prev.lost_frame_count[idx] >= self._max_lost_frame_count
                or prev.ID_period[idx] <= self._min_instance_period
            ):
                continue
            keep.append(idx)
        kept = Instances(instances.image_size)
        index = torch.as_tensor(keep, dtype=torch.long)
        kept.pred_boxes = Boxes(boxes[index].reshape(-1, 4).to(instances.pred_boxes.tensor))
        kept.pred_classes = prev.pred_classes[index].to(instances.pred_classes.dtype)
        kept.scores = prev.scores[index].to(instances.scores.dtype)
        kept.ID = [prev.ID[i] for i in keep]
        kept.ID_period = [prev.ID_period[i] for i in keep]
        kept.lost_frame_count = [prev.lost_frame_count[i] + 1 for i in keep]
        if instances.has("pred_masks"):
            kept.pred_masks = prev.pred_masks[index].to(instances.pred_masks.dtype)
        extra = set(instances.get_fields()) - set(kept.get_fields())
        if extra:
            raise KeyError(
                f"{type(self).__name__}: cannot carry lost tracks with the fields {sorted(extra)}"
            )
        if len(kept) == 0:
            return instances
        return Instances.cat([instances, kept])


def build_tracker_head(cfg: CfgNode) -> BaseTracker:
    """The tracker named by ``cfg.TRACKER_HEADS.TRACKER_NAME``, built from ``cfg``."""
    if "TRACKER_HEADS" not in cfg or "TRACKER_NAME" not in cfg.TRACKER_HEADS:
        raise KeyError("build_tracker_head needs cfg.TRACKER_HEADS.TRACKER_NAME")
    return TRACKER_HEADS_REGISTRY.get(cfg.TRACKER_HEADS.TRACKER_NAME)(cfg)


def _tracker_args_from_config(cfg: CfgNode) -> dict:
    """The keyword arguments shared by the IoU trackers, from ``cfg.TRACKER_HEADS``."""
    th = cfg.TRACKER_HEADS
    for key in ("VIDEO_HEIGHT", "VIDEO_WIDTH"):
        if key not in th:
            raise KeyError(f"cfg.TRACKER_HEADS.{key} is required by the IoU trackers")
    return {
        "video_height": th.VIDEO_HEIGHT,
        "video_width": th.VIDEO_WIDTH,
        "max_num_instances": th.get("MAX_NUM_INSTANCES", 200),
        "max_lost_frame_count": th.get("MAX_LOST_FRAME_COUNT", 0),
        "min_box_rel_dim": th.get("MIN_BOX_REL_DIM", 0.02),
        "min_instance_period": th.get("MIN_INSTANCE_PERIOD", 1),
        "track_iou_threshold": th.get("TRACK_IOU_THRESHOLD", 0.5),
    }


def _check_instances(instances: Any, who: str) -> None:
    if not isinstance(instances, Instances):
        raise TypeError(f"{who}.update takes an Instances, got {type(instances).__name__}")
    for field in ("pred_boxes", "pred_classes", "scores"):
        if not instances.has(field):
            raise KeyError(f"{who}.update: the instances have no {field!r} field")

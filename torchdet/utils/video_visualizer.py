"""Draw predictions on video frames with colours that stay with an object from frame to frame
(Detectron2's ``detectron2.utils.video_visualizer``).

Colours follow track identities: when the predictions carry an ``ID`` field (from a tracker of
``torchdet.tracking``, e.g. ``BBoxIOUTracker``), each id keeps its colour for the whole video;
otherwise a small built-in heuristic matches each frame's instances to the previous frame's (box
IoU >= 0.6, or mask IoU >= 0.5, same class) and hands the colour on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch

from torchdet.utils.colormap import random_color, random_colors
from torchdet.utils.visualizer import (
    ColorMode,
    VisImage,
    Visualizer,
    _create_text_labels,
    _meta_get,
    _PanopticPrediction,
)

__all__ = ["VideoVisualizer"]


class _DetectedInstance:
    """An instance seen in a frame, for the colour heuristic.

    Attributes:
        label (int), bbox (ndarray[4] XYXY or None), mask_rle (RLE or None), color, ttl (frames
        the instance is remembered while unmatched).
    """

    __slots__ = ["label", "bbox", "mask_rle", "color", "ttl"]

    def __init__(self, label: int, bbox: Any, mask_rle: Any, color: Any, ttl: int) -> None:
        self.label = label
        self.bbox = bbox
        self.mask_rle = mask_rle
        self.color = color
        self.ttl = ttl


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ndarray[N, M] IoU of XYXY boxes a (N, 4) and b (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class VideoVisualizer:
    """Draws one frame at a time; keep one instance per video."""

    def __init__(self, metadata: Any, instance_mode: ColorMode = ColorMode.IMAGE) -> None:
        """
        Args:
            metadata: dataset metadata (as for :class:`Visualizer`); ``max_num_instances``
                (default 74) bounds the colour pool, ``period_threshold`` (default 0) hides
                tracks seen for that many frames or fewer.
            instance_mode: ``ColorMode.IMAGE`` or ``ColorMode.IMAGE_BW``.
        """
        if instance_mode not in (ColorMode.IMAGE, ColorMode.IMAGE_BW):
            raise ValueError(f"VideoVisualizer supports IMAGE and IMAGE_BW, got {instance_mode}")
        self.metadata = metadata
        self._old_instances: list[_DetectedInstance] = []
        self._instance_mode = instance_mode
        self._max_num_instances = int(_meta_get(metadata, "max_num_instances", 74))
        self._assigned_colors: dict[int, Any] = {}  # track id -> colour
        self._color_pool = random_colors(min(self._max_num_instances, 74), rgb=True, maximum=1)
        self._color_idx_set = set(range(len(self._color_pool)))

    def draw_instance_predictions(self, frame: np.ndarray, predictions: Any) -> VisImage:
        """Draw one frame's predictions.

        Args:
            frame (ndarray[H, W, 3]): the frame, RGB.
            predictions (Instances): as for ``Visualizer.draw_instance_predictions``; with
                ``ID`` (and ``ID_period``) from a tracker, colours follow the ids.
        """
        frame_visualizer = Visualizer(frame, self.metadata)
        num_instances = len(predictions)
        if num_instances == 0:
            return frame_visualizer.output
        boxes = (
            predictions.pred_boxes.tensor.detach().cpu().numpy()
            if predictions.has("pred_boxes")
            else None
        )
        scores = predictions.scores if predictions.has("scores") else None
        classes = (
            predictions.pred_classes.cpu().numpy() if predictions.has("pred_classes") else None
        )
        keypoints = predictions.pred_keypoints if predictions.has("pred_keypoints") else None
        masks = predictions.pred_masks if predictions.has("pred_masks") else None
        periods = predictions.ID_period if predictions.has("ID_period") else None
        period_threshold = _meta_get(self.metadata, "period_threshold", 0)
        visible = np.array(
            [True] * num_instances
            if periods is None
            else [p is not None and p > period_threshold for p in periods],
            dtype=bool,
        )

        if predictions.has("COLOR"):
            colors = list(predictions.COLOR)
        elif predictions.has("ID"):
            colors = self._colors_for_ids(list(predictions.ID))
        else:
            detected = [
                _DetectedInstance(
                    int(classes[i]) if classes is not None else 0,
                    boxes[i] if boxes is not None else None,
                    None,
                    None,
                    ttl=8,
                )
                for i in range(num_instances)
            ]
            if boxes is None and masks is not None:
                rles = mask_util.encode(
                    np.asfortranarray(
                        torch.as_tensor(masks).cpu().numpy().transpose(1, 2, 0).astype(np.uint8)
                    )
                )
                for d, rle in zip(detected, rles):
                    d.mask_rle = rle
            colors = self._assign_colors(detected)

        labels = _create_text_labels(classes, scores, _meta_get(self.metadata, "thing_classes"))
        if self._instance_mode == ColorMode.IMAGE_BW:
            keep = None
            if masks is not None:
                keep = (torch.as_tensor(masks).cpu().any(dim=0) > 0).numpy()
            frame_visualizer.output.reset_image(frame_visualizer._create_grayscale_image(keep))
            alpha = 0.3
        else:
            alpha = 0.5
        index = np.nonzero(visible)[0]
        frame_visualizer.overlay_instances(
            # with masks, boxes only clutter the frame
            boxes=None if masks is not None or boxes is None else boxes[index],
            masks=None if masks is None else torch.as_tensor(masks).cpu().numpy()[index],
            labels=None if labels is None else [labels[i] for i in index],
            keypoints=None if keypoints is None else np.asarray(keypoints)[index],
            assigned_colors=[colors[i] for i in index],
            alpha=alpha,
        )
        return frame_visualizer.output

    def draw_sem_seg(
        self, frame: np.ndarray, sem_seg: Any, area_threshold: float | None = None
    ) -> VisImage:
        """Draw a semantic map (nothing to track: as ``Visualizer.draw_sem_seg``)."""
        frame_visualizer = Visualizer(frame, self.metadata)
        frame_visualizer.draw_sem_seg(sem_seg, area_threshold=area_threshold)
        return frame_visualizer.output

    def draw_panoptic_seg_predictions(
        self,
        frame: np.ndarray,
        panoptic_seg: Any,
        segments_info: list[dict] | None,
        area_threshold: float | None = None,
        alpha: float = 0.5,
    ) -> VisImage:
        """Draw a panoptic segmentation; instance colours carried over by mask IoU."""
        frame_visualizer = Visualizer(frame, self.metadata)
        pred = _PanopticPrediction(panoptic_seg, segments_info, self.metadata)
        if self._instance_mode == ColorMode.IMAGE_BW:
            frame_visualizer.output.reset_image(
                frame_visualizer._create_grayscale_image(pred.non_empty_mask())
            )
        stuff_classes = _meta_get(self.metadata, "stuff_classes")
        stuff_colors = _meta_get(self.metadata, "stuff_colors")
        for mask, sinfo in pred.semantic_masks():
            c = sinfo["category_id"]
            color = [x / 255 for x in stuff_colors[c]] if stuff_colors is not None else None
            frame_visualizer.draw_binary_mask(
                mask.astype(np.uint8),
                color=color,
                text=stuff_classes[c] if stuff_classes is not None else None,
                alpha=alpha,
                area_threshold=area_threshold,
            )
        instances = list(pred.instance_masks())
        if len(instances) == 0:
            return frame_visualizer.output
        masks, sinfo = list(zip(*instances))
        rles = mask_util.encode(
            np.asfortranarray(np.stack(masks).transpose(1, 2, 0).astype(np.uint8))
        )
        category_ids = [x["category_id"] for x in sinfo]
        detected = [
            _DetectedInstance(category_ids[i], None, rles[i], None, ttl=8)
            for i in range(len(masks))
        ]
        colors = self._assign_colors(detected)
        thing_classes = _meta_get(self.metadata, "thing_classes")
        labels = [thing_classes[k] for k in category_ids] if thing_classes else None
        frame_visualizer.overlay_instances(
            masks=[m.astype(np.uint8) for m in masks],
            labels=labels,
            assigned_colors=colors,
            alpha=alpha,
        )
        return frame_visualizer.output

    def _colors_for_ids(self, ids: list[Any]) -> list[Any]:
        """One colour per track id, the same for the id's whole life; ids beyond the pool get
        random palette colours."""
        colors = []
        for track_id in ids:
            if track_id not in self._assigned_colors:
                if self._color_idx_set:
                    k = min(self._color_idx_set)
                    self._color_idx_set.remove(k)
                    self._assigned_colors[track_id] = self._color_pool[k]
                else:
                    self._assigned_colors[track_id] = random_color(rgb=True, maximum=1)
            colors.append(self._assigned_colors[track_id])
        return colors

    def _assign_colors(self, instances: list[_DetectedInstance]) -> list[Any]:
        """Hand each instance the colour of the previous frame's instance it matches best
        (same label, IoU above the threshold); new instances get random colours.
        Unmatched old instances are remembered for ``ttl`` frames.
        """
        if instances[0].bbox is None:
            # masks only when there are no boxes: boxes are good enough
            rles_old = [x.mask_rle for x in self._old_instances]
            rles_new = [x.mask_rle for x in instances]
            if rles_old:
                ious = np.asarray(
                    mask_util.iou(rles_old, rles_new, [0] * len(rles_new)), dtype=np.float64
                ).reshape(len(rles_old), len(rles_new))
            else:
                ious = np.zeros((0, len(instances)))
            threshold = 0.5
        else:
            old = np.array([x.bbox for x in self._old_instances], dtype=np.float64).reshape(-1, 4)
            new = np.array([x.bbox for x in instances], dtype=np.float64).reshape(-1, 4)
            ious = _box_iou(old, new)
            threshold = 0.6
        old_labels = np.array([x.label for x in self._old_instances])
        new_labels = np.array([x.label for x in instances])
        if ious.size:
            ious = np.where(old_labels[:, None] == new_labels[None, :], ious, 0.0)
        extra = []
        for idx, inst in enumerate(self._old_instances):
            if ious[idx].max() > threshold:
                new_idx = int(ious[idx].argmax())
                if instances[new_idx].color is None:
                    instances[new_idx].color = inst.color
                    continue
            # unmatched: keep it a few frames in case the detector just missed it
            inst.ttl -= 1
            if inst.ttl > 0:
                extra.append(inst)
        for inst in instances:
            if inst.color is None:
                inst.color = random_color(rgb=True, maximum=1)
        self._old_instances = instances[:] + extra
        return [d.color for d in instances]

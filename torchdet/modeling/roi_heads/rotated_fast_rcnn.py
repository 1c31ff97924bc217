"""Rotated-box RoI heads (``RROIHeads``) and their inference (``fast_rcnn_inference_rotated``).

Boxes are ``(cx, cy, w, h, angle)`` with the angle in degrees, counter-clockwise.
Shape shorthand: Ri proposals of image i, K foreground classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from torchdet.config import configurable
from torchdet.layers import ShapeSpec, batched_nms_rotated
from torchdet.structures import Instances, RotatedBoxes, pairwise_iou_rotated

from ..box_regression import Box2BoxTransformRotated
from ..poolers import ROIPooler
from ..proposal_generator.proposal_utils import add_ground_truth_to_proposals
from .box_head import build_box_head
from .events import put_scalars
from .fast_rcnn import FastRCNNOutputLayers
from .roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads

__all__ = ["RROIHeads", "RotatedFastRCNNOutputLayers", "fast_rcnn_inference_rotated"]


def fast_rcnn_inference_rotated(
    boxes: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    image_shapes: Sequence[tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> tuple[list[Instances], list[torch.Tensor]]:
    """``fast_rcnn_inference`` for rotated boxes.

    Args:
        boxes (list[Tensor[Ri, K * 5] or Tensor[Ri, 5]]): per image, predicted rotated boxes.
        scores (list[Tensor[Ri, K + 1]]): per image, class probabilities.
        image_shapes (list[tuple[int, int]]): per image (height, width); nearly horizontal
            boxes are clipped to it.
        score_thresh, nms_thresh, topk_per_image: as in ``fast_rcnn_inference``.

    Returns:
        instances (list[Instances]): per image, ``pred_boxes`` (RotatedBoxes), ``scores``,
            ``pred_classes``.
        kept_indices (list[Tensor]): per image, the proposal index of each detection.
    """
    result_per_image = [
        fast_rcnn_inference_single_image_rotated(
            boxes_per_image, scores_per_image, image_shape, score_thresh, nms_thresh, topk_per_image
        )
        for scores_per_image, boxes_per_image, image_shape in zip(scores, boxes, image_shapes)
    ]
    return [x[0] for x in result_per_image], [x[1] for x in result_per_image]


@torch.no_grad()
def fast_rcnn_inference_single_image_rotated(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_shape: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> tuple[Instances, torch.Tensor]:
    """``fast_rcnn_inference_rotated`` for one image."""
    B = 5
    valid_mask = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not valid_mask.all():
        boxes = boxes[valid_mask]
        scores = scores[valid_mask]

    scores = scores[:, :-1]
    num_bbox_reg_classes = boxes.shape[1] // B
    boxes = RotatedBoxes(boxes.reshape(-1, B))
    boxes.clip(image_shape, clip_angle_threshold=1.0)
    boxes = boxes.tensor.view(-1, num_bbox_reg_classes, B)  # (R, K or 1, 5)

    filter_mask = scores > score_thresh
    filter_inds = filter_mask.nonzero()
    if num_bbox_reg_classes == 1:
        boxes = boxes[filter_inds[:, 0], 0]
    else:
        boxes = boxes[filter_mask]
    scores = scores[filter_mask]

    keep = batched_nms_rotated(boxes, scores, filter_inds[:, 1], nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    boxes, scores, filter_inds = boxes[keep], scores[keep], filter_inds[keep]

    result = Instances(image_shape)
    result.pred_boxes = RotatedBoxes(boxes)
    result.scores = scores
    result.pred_classes = filter_inds[:, 1]
    return result, filter_inds[:, 0]


class RotatedFastRCNNOutputLayers(FastRCNNOutputLayers):
    """``FastRCNNOutputLayers`` predicting rotated-box deltas (5 per class)."""

    @classmethod
    def _box2box_transform(cls, weights):
        return Box2BoxTransformRotated(weights=weights)

    def inference(self, predictions, proposals: list[Instances]):
        """Rotated detections of each image (see ``fast_rcnn_inference_rotated``)."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        image_shapes = [x.image_size for x in proposals]
        return fast_rcnn_inference_rotated(
            boxes,
            scores,
            image_shapes,
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )


@ROI_HEADS_REGISTRY.register()
class RROIHeads(StandardROIHeads):
    """Standard RoI heads for rotated boxes (box head only: no mask or keypoint head)."""

    @configurable
    def __init__(self, **kwargs):
        """
        Args:
            kwargs: as for ``StandardROIHeads``; the pooler must be ``ROIAlignRotated``.
        """
        super().__init__(**kwargs)
        if self.mask_on or self.keypoint_on:
            raise ValueError("RROIHeads has no mask or keypoint head (MASK_ON / KEYPOINT_ON)")
        if self.train_on_pred_boxes:
            raise ValueError("RROIHeads does not support MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES")

    @classmethod
    def _init_box_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        pooler_resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        pooler_scales = tuple(1.0 / input_shape[k].stride for k in in_features)
        sampling_ratio = cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO
        pooler_type = cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE
        if pooler_type not in ("ROIAlignRotated",):
            raise ValueError(
                f"RROIHeads needs MODEL.ROI_BOX_HEAD.POOLER_TYPE 'ROIAlignRotated', got "
                f"{pooler_type!r}"
            )
        in_channels = cls._in_channels(in_features, input_shape, "MODEL.ROI_HEADS.IN_FEATURES")
        box_pooler = ROIPooler(
            output_size=pooler_resolution,
            scales=pooler_scales,
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        box_head = build_box_head(
            cfg, ShapeSpec(channels=in_channels, height=pooler_resolution, width=pooler_resolution)
        )
        box_predictor = RotatedFastRCNNOutputLayers(cfg, box_head.output_shape)
        return {
            "box_in_features": in_features,
            "box_pooler": box_pooler,
            "box_head": box_head,
            "box_predictor": box_predictor,
        }

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: list[Instances], targets: list[Instances]
    ) -> list[Instances]:
        """As ``ROIHeads.label_and_sample_proposals``, matching by rotated IoU; the sampled
        proposals get ``gt_classes`` and ``gt_boxes``."""
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals([x.gt_boxes for x in targets], proposals)

        proposals_with_gt = []
        num_fg_samples = []
        num_bg_samples = []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            has_gt = len(targets_per_image) > 0
            match_quality_matrix = pairwise_iou_rotated(
                targets_per_image.gt_boxes, proposals_per_image.proposal_boxes
            )
            matched_idxs, matched_labels = self.proposal_matcher(match_quality_matrix)
            sampled_idxs, gt_classes = self._sample_proposals(
                matched_idxs, matched_labels, targets_per_image.gt_classes
            )
            proposals_per_image = proposals_per_image[sampled_idxs]
            proposals_per_image.gt_classes = gt_classes
            if has_gt:
                sampled_targets = matched_idxs[sampled_idxs]
                proposals_per_image.gt_boxes = targets_per_image.gt_boxes[sampled_targets]

            num_bg_samples.append((gt_classes == self.num_classes).sum().item())
            num_fg_samples.append(gt_classes.numel() - num_bg_samples[-1])
            proposals_with_gt.append(proposals_per_image)

        if proposals_with_gt:
            put_scalars(
                **{
                    "roi_head/num_fg_samples": float(np.mean(num_fg_samples)),
                    "roi_head/num_bg_samples": float(np.mean(num_bg_samples)),
                }
            )
        return proposals_with_gt

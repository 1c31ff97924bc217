"""FCOS (Tian et al., 2019): an anchor-free dense detector predicting, at every location,
class scores, distances to the box sides and a centerness.

Built with keyword arguments (or a LazyConfig), as in Detectron2: there are no yaml config
keys for it. Shape shorthand: N images, R locations over all levels, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.layers import ShapeSpec, batched_nms, sigmoid_focal_loss
from torchdet.structures import Boxes, ImageList, Instances, pairwise_point_box_distance

from ..anchor_generator import DefaultAnchorGenerator
from ..backbone import Backbone
from ..box_regression import Box2BoxTransformLinear, _dense_box_regression_loss
from ..roi_heads.events import put_scalars
from .dense_detector import DenseDetector
from .retinanet import RetinaNetHead

__all__ = ["FCOS", "FCOSHead"]


class FCOS(DenseDetector):
    """FCOS with center sampling, GIoU box loss and a centerness branch (no learnable
    per-level scale: the regression targets are normalised by the stride)."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Sequence[str] | None = None,
        box2box_transform: Box2BoxTransformLinear | None = None,
        num_classes: int,
        center_sampling_radius: float = 1.5,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        test_score_thresh: float = 0.2,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        Args:
            backbone, head, head_in_features, pixel_mean, pixel_std: see ``DenseDetector``;
                the head is an ``FCOSHead``.
            box2box_transform: default ``Box2BoxTransformLinear(normalize_by_size=True)``.
            num_classes: K.
            center_sampling_radius: a location is positive for a box only within this many
                strides of the box centre.
            focal_loss_alpha, focal_loss_gamma: focal loss parameters.
            test_score_thresh, test_topk_candidates, test_nms_thresh,
            max_detections_per_image: inference, as in RetinaNet.
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.num_classes = num_classes
        # One "anchor" per location: a box of the level's stride, so deltas are in strides.
        strides = [backbone.output_shape()[k].stride for k in self.head_in_features]
        self.anchor_generator = DefaultAnchorGenerator(
            sizes=[[k] for k in strides], aspect_ratios=[1.0], strides=strides
        )
        if box2box_transform is None:
            box2box_transform = Box2BoxTransformLinear(normalize_by_size=True)
        self.box2box_transform = box2box_transform
        self.center_sampling_radius = float(center_sampling_radius)
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_anchor_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(
            anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
        )

    @torch.no_grad()
    def _match_anchors(self, gt_boxes: Boxes, anchors: list[Boxes]) -> torch.Tensor:
        """The FCOS assignment: a location matches a box if it is inside it, within the
        centre sampling radius, and the box's largest side distance fits the level's range.

        Returns:
            Tensor[M, R] float: ``1e8 - area`` of each matching box (0 elsewhere), so that the
            smallest matching box wins an argmax.
        """
        num_anchors_per_level = [len(x) for x in anchors]
        anchors = Boxes.cat(anchors)  # (R, 4)
        anchor_centers = anchors.get_centers()  # (R, 2)
        anchor_sizes = anchors.tensor[:, 2] - anchors.tensor[:, 0]  # (R,)

        # Level l handles boxes whose largest side distance is in [4, 8] strides (open-ended
        # for the first and last levels).
        lower_bound = anchor_sizes * 4
        lower_bound[: num_anchors_per_level[0]] = 0
        upper_bound = anchor_sizes * 8
        upper_bound[-num_anchors_per_level[-1] :] = float("inf")

        gt_centers = gt_boxes.get_centers()
        center_dists = (
            (anchor_centers[None, :, :] - gt_centers[:, None, :]).abs_().max(dim=2).values
        )
        sampling_regions = self.center_sampling_radius * anchor_sizes[None, :]
        match_quality_matrix = center_dists < sampling_regions

        pairwise_dist = pairwise_point_box_distance(anchor_centers, gt_boxes)
        pairwise_dist = pairwise_dist.permute(1, 0, 2)  # (M, R, 4)
        match_quality_matrix &= pairwise_dist.min(dim=2).values > 0  # inside the box

        pairwise_dist = pairwise_dist.max(dim=2).values
        match_quality_matrix &= (pairwise_dist > lower_bound[None, :]) & (
            pairwise_dist < upper_bound[None, :]
        )
        gt_areas = gt_boxes.area()
        match_quality_matrix = match_quality_matrix.to(torch.float32)
        match_quality_matrix *= 1e8 - gt_areas[:, None]
        return match_quality_matrix

    @torch.no_grad()
    def label_anchors(
        self, anchors: list[Boxes], gt_instances: list[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image, the class (K: background) and matched box of every location."""
        gt_labels, matched_gt_boxes = [], []
        for inst in gt_instances:
            if len(inst) > 0:
                match_quality_matrix = self._match_anchors(inst.gt_boxes, anchors)
                match_quality, matched_idxs = match_quality_matrix.max(dim=0)
                matched_idxs[match_quality < 1e-5] = -1
                matched_gt_boxes_i = inst.gt_boxes.tensor[matched_idxs.clip(min=0)]
                gt_labels_i = inst.gt_classes[matched_idxs.clip(min=0)]
                gt_labels_i[matched_idxs < 0] = self.num_classes
            else:
                num_anchors = Boxes.cat(anchors).tensor.shape[0]
                matched_gt_boxes_i = torch.zeros((num_anchors, 4), device=self.device)
                gt_labels_i = torch.full(
                    (num_anchors,), self.num_classes, dtype=torch.long, device=self.device
                )
            gt_labels.append(gt_labels_i)
            matched_gt_boxes.append(matched_gt_boxes_i)
        return gt_labels, matched_gt_boxes

    def losses(
        self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
    ) -> dict[str, torch.Tensor]:
        """``loss_fcos_cls`` (focal), ``loss_fcos_loc`` (GIoU) and ``loss_fcos_ctr``
        (centerness BCE), divided by a moving average of the number of positives."""
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        put_scalars(num_pos_anchors=num_pos_anchors / num_images)
        normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 300)

        gt_labels_target = F.one_hot(gt_labels, num_classes=self.num_classes + 1)[:, :, :-1]
        loss_cls = sigmoid_focal_loss(
            torch.cat(pred_logits, dim=1),
            gt_labels_target.to(pred_logits[0].dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        loss_box_reg = _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type="giou",
        )
        ctrness_targets = self.compute_ctrness_targets(anchors, gt_boxes)  # (N, R)
        pred_centerness = torch.cat(pred_centerness, dim=1).squeeze(dim=2)  # (N, R)
        ctrness_loss = F.binary_cross_entropy_with_logits(
            pred_centerness[pos_mask], ctrness_targets[pos_mask], reduction="sum"
        )
        return {
            "loss_fcos_cls": loss_cls / normalizer,
            "loss_fcos_loc": loss_box_reg / normalizer,
            "loss_fcos_ctr": ctrness_loss / normalizer,
        }

    def compute_ctrness_targets(
        self, anchors: list[Boxes], gt_boxes: list[torch.Tensor]
    ) -> torch.Tensor:
        """Centerness ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of every
        location for its matched box. Returns Tensor[N, R]."""
        anchors = Boxes.cat(anchors).tensor
        reg_targets = [self.box2box_transform.get_deltas(anchors, m) for m in gt_boxes]
        reg_targets = torch.stack(reg_targets, dim=0)  # (N, R, 4)
        if len(reg_targets) == 0:
            return reg_targets.new_zeros(len(reg_targets))
        left_right = reg_targets[:, :, [0, 2]]
        top_bottom = reg_targets[:, :, [1, 3]]
        ctrness = (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0]) * (
            top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]
        )
        return torch.sqrt(ctrness)

    def forward_inference(self, images: ImageList, features, predictions) -> list[Instances]:
        pred_logits, pred_anchor_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        results = []
        for img_idx, image_size in enumerate(images.image_sizes):
            # Geometric mean of class and centerness probabilities (eqn. 4 of FCOS v2).
            scores_per_image = [
                torch.sqrt(x[img_idx].sigmoid() * y[img_idx].sigmoid())
                for x, y in zip(pred_logits, pred_centerness)
            ]
            deltas_per_image = [x[img_idx] for x in pred_anchor_deltas]
            results.append(
                self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size)
            )
        return results

    def inference_single_image(self, anchors, box_cls, box_delta, image_size) -> Instances:
        pred = self._decode_multi_level_predictions(
            anchors,
            box_cls,
            box_delta,
            self.test_score_thresh,
            self.test_topk_candidates,
            image_size,
        )
        keep = batched_nms(
            pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh
        )
        return pred[keep[: self.max_detections_per_image]]


class FCOSHead(RetinaNetHead):
    """The RetinaNet head with one location per cell and a centerness branch (``ctrness``)
    on the box subnet."""

    def __init__(self, *, input_shape: list[ShapeSpec], conv_dims: list[int], **kwargs):
        """
        Args:
            input_shape, conv_dims, kwargs: as for ``RetinaNetHead`` (``num_anchors`` is 1).
        """
        super().__init__(input_shape=input_shape, conv_dims=conv_dims, num_anchors=1, **kwargs)
        self._num_features = len(input_shape)
        self.ctrness = nn.Conv2d(conv_dims[-1], 1, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.ctrness.weight, std=0.01)
        nn.init.constant_(self.ctrness.bias, 0)

    def forward(self, features: list[torch.Tensor]):
        """
        Returns:
            logits, bbox_reg, ctrness: per level, ``(N, K, Hi, Wi)``, ``(N, 4, Hi, Wi)``,
            ``(N, 1, Hi, Wi)``.
        """
        if len(features) != self._num_features:
            raise ValueError(
                f"FCOSHead: got {len(features)} feature maps, built for {self._num_features}"
            )
        logits = []
        bbox_reg = []
        ctrness = []
        for feature in features:
            logits.append(self.cls_score(self.cls_subnet(feature)))
            bbox_feature = self.bbox_subnet(feature)
            bbox_reg.append(self.bbox_pred(bbox_feature))
            ctrness.append(self.ctrness(bbox_feature))
        return logits, bbox_reg, ctrness

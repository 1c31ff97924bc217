"""RetinaNet (Lin et al., 2017): a dense detector with focal loss.

Shape shorthand: N images, Hi x Wi the size of level i, A anchors per cell,
R = sum_i Hi*Wi*A anchors, K classes (background is K in the labels).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import (
    CycleBatchNormList,
    ShapeSpec,
    batched_nms,
    cat,
    get_norm,
    sigmoid_focal_loss,
)
from torchdet.structures import Boxes, ImageList, Instances, pairwise_iou

from ..anchor_generator import build_anchor_generator
from ..backbone import Backbone, build_backbone
from ..box_regression import Box2BoxTransform, _dense_box_regression_loss
from ..matcher import Matcher
from ..roi_heads.events import put_scalars
from .build import META_ARCH_REGISTRY
from .dense_detector import DenseDetector

__all__ = ["RetinaNet", "RetinaNetHead"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class RetinaNet(DenseDetector):
    """RetinaNet: FPN features, a shared classification / box subnet on every level, focal
    loss, per-class NMS at inference."""

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Sequence[str],
        anchor_generator: nn.Module,
        box2box_transform: Box2BoxTransform,
        anchor_matcher: Matcher,
        num_classes: int,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        vis_period: int = 0,
        input_format: str = "BGR",
    ):
        """
        Args:
            backbone: extracts the features.
            head: a ``RetinaNetHead`` (class logits and box deltas per anchor).
            head_in_features: the backbone outputs the head runs on.
            anchor_generator: the anchors of each level.
            box2box_transform: encodes / decodes anchor-relative deltas.
            anchor_matcher: labels anchors by IoU (with low-quality matches).
            num_classes: K.
            focal_loss_alpha, focal_loss_gamma: focal loss parameters.
            smooth_l1_beta: beta of the smooth L1 box loss (0 is L1).
            box_reg_loss_type: "smooth_l1", "giou", "diou" or "ciou".
            test_score_thresh: candidates at or below it are dropped at inference.
            test_topk_candidates: candidates kept per level before NMS.
            test_nms_thresh: IoU threshold of the per-class NMS.
            max_detections_per_image: detections kept per image.
            pixel_mean, pixel_std: input normalisation.
            vis_period, input_format: visualisation (not drawn by torchdet).
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.num_classes = num_classes
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform
        self.anchor_matcher = anchor_matcher
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_type = box_reg_loss_type
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.vis_period = vis_period
        self.input_format = input_format

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        backbone_shape = backbone.output_shape()
        in_features = cfg.MODEL.RETINANET.IN_FEATURES
        missing = [f for f in in_features if f not in backbone_shape]
        if missing:
            raise KeyError(
                f"MODEL.RETINANET.IN_FEATURES {missing} are not backbone outputs "
                f"(the backbone has {list(backbone_shape)})"
            )
        feature_shapes = [backbone_shape[f] for f in in_features]
        head = RetinaNetHead(cfg, feature_shapes)
        anchor_generator = build_anchor_generator(cfg, feature_shapes)
        return {
            "backbone": backbone,
            "head": head,
            "anchor_generator": anchor_generator,
            "box2box_transform": Box2BoxTransform(weights=cfg.MODEL.RETINANET.BBOX_REG_WEIGHTS),
            "anchor_matcher": Matcher(
                cfg.MODEL.RETINANET.IOU_THRESHOLDS,
                cfg.MODEL.RETINANET.IOU_LABELS,
                allow_low_quality_matches=True,
            ),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "head_in_features": in_features,
            "focal_loss_alpha": cfg.MODEL.RETINANET.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": cfg.MODEL.RETINANET.FOCAL_LOSS_GAMMA,
            "smooth_l1_beta": cfg.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA,
            "box_reg_loss_type": cfg.MODEL.RETINANET.BBOX_REG_LOSS_TYPE,
            "test_score_thresh": cfg.MODEL.RETINANET.SCORE_THRESH_TEST,
            "test_topk_candidates": cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": cfg.MODEL.RETINANET.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "vis_period": cfg.VIS_PERIOD,
            "input_format": cfg.INPUT.FORMAT,
        }

    def forward_training(
        self,
        images: ImageList,
        features: list[torch.Tensor],
        predictions: tuple[list[torch.Tensor], list[torch.Tensor]],
        gt_instances: list[Instances],
    ) -> dict[str, torch.Tensor]:
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)

    def losses(
        self,
        anchors: list[Boxes],
        pred_logits: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        gt_boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Focal loss over the non-ignored anchors and box loss over the foreground ones, both
        divided by a moving average of the number of foreground anchors.

        Args:
            anchors (list[Boxes]): per level.
            pred_logits (list[Tensor[N, R_l, K]]), pred_anchor_deltas (list[Tensor[N, R_l, 4]]).
            gt_labels (list[Tensor[R]]): per image, K background, -1 ignored.
            gt_boxes (list[Tensor[R, 4]]): per image, the matched ground-truth boxes.

        Returns:
            dict: ``loss_cls`` and ``loss_box_reg``.
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)

        valid_mask = gt_labels >= 0
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        put_scalars(num_pos_anchors=num_pos_anchors / num_images)
        normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 100)

        # One-hot without the background column: background anchors are all-zero targets.
        gt_labels_target = F.one_hot(gt_labels[valid_mask], num_classes=self.num_classes + 1)[
            :, :-1
        ]
        loss_cls = sigmoid_focal_loss(
            cat(pred_logits, dim=1)[valid_mask],
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
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box_reg / normalizer}

    @torch.no_grad()
    def label_anchors(
        self, anchors: list[Boxes], gt_instances: list[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Label every anchor with its matched ground-truth class and box.

        Returns:
            gt_labels (list[Tensor[R] int64]): per image; K background, -1 ignored.
            matched_gt_boxes (list[Tensor[R, 4]]): per image (zeros without ground truth).
        """
        anchors = Boxes.cat(anchors)  # (R, 4)
        gt_labels = []
        matched_gt_boxes = []
        for gt_per_image in gt_instances:
            match_quality_matrix = pairwise_iou(gt_per_image.gt_boxes, anchors)
            matched_idxs, anchor_labels = self.anchor_matcher(match_quality_matrix)
            del match_quality_matrix

            if len(gt_per_image) > 0:
                matched_gt_boxes_i = gt_per_image.gt_boxes.tensor[matched_idxs]
                gt_labels_i = gt_per_image.gt_classes[matched_idxs]
                gt_labels_i[anchor_labels == 0] = self.num_classes
                gt_labels_i[anchor_labels == -1] = -1
            else:
                matched_gt_boxes_i = torch.zeros_like(anchors.tensor)
                gt_labels_i = torch.zeros_like(matched_idxs) + self.num_classes
            gt_labels.append(gt_labels_i)
            matched_gt_boxes.append(matched_gt_boxes_i)
        return gt_labels, matched_gt_boxes

    def forward_inference(
        self,
        images: ImageList,
        features: list[torch.Tensor],
        predictions: tuple[list[torch.Tensor], list[torch.Tensor]],
    ) -> list[Instances]:
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4]
        )
        anchors = self.anchor_generator(features)
        results = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores_per_image = [x[img_idx].sigmoid() for x in pred_logits]
            deltas_per_image = [x[img_idx] for x in pred_anchor_deltas]
            results.append(
                self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size)
            )
        return results

    def inference_single_image(
        self,
        anchors: list[Boxes],
        box_cls: list[torch.Tensor],
        box_delta: list[torch.Tensor],
        image_size: tuple[int, int],
    ) -> Instances:
        """Detections of one image: top candidates of each level, then per-class NMS.

        Args:
            anchors (list[Boxes]): per level.
            box_cls (list[Tensor[R_l, K]]): per level, class probabilities.
            box_delta (list[Tensor[R_l, 4]]): per level, box deltas.
            image_size: (height, width).
        """
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


class RetinaNetHead(nn.Module):
    """The RetinaNet head: a classification subnet and a box subnet (3x3 convs with ReLU),
    shared across levels, then ``cls_score`` (A * K logits) and ``bbox_pred`` (A * 4)."""

    @configurable
    def __init__(
        self,
        *,
        input_shape: list[ShapeSpec],
        num_classes: int,
        num_anchors: int,
        conv_dims: list[int],
        norm: str = "",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape (list[ShapeSpec]): the input feature maps (same channels).
            num_classes: K.
            num_anchors: A.
            conv_dims: channels of each subnet conv.
            norm: normalization after each subnet conv; "BN" / "SyncBN" use separate
                statistics per level (``CycleBatchNormList``).
            prior_prob: initial foreground probability of every anchor (focal loss paper).
        """
        super().__init__()
        self._num_features = len(input_shape)
        if norm in ("BN", "SyncBN"):
            logger.info(
                f"Using domain-specific {norm} in RetinaNetHead with len={len(input_shape)}."
            )
            bn_class = nn.BatchNorm2d if norm == "BN" else nn.SyncBatchNorm

            def norm(c):
                return CycleBatchNormList(
                    length=self._num_features, bn_class=bn_class, num_features=c
                )

        else:
            norm_name = str(type(get_norm(norm, 32)))
            if "BN" in norm_name:
                logger.warning(
                    f"Shared BatchNorm (type={norm_name}) may not work well in RetinaNetHead."
                )

        cls_subnet = []
        bbox_subnet = []
        for in_channels, out_channels in zip([input_shape[0].channels, *conv_dims], conv_dims):
            cls_subnet.append(nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1))
            if norm:
                cls_subnet.append(get_norm(norm, out_channels))
            cls_subnet.append(nn.ReLU())
            bbox_subnet.append(nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1))
            if norm:
                bbox_subnet.append(get_norm(norm, out_channels))
            bbox_subnet.append(nn.ReLU())

        self.cls_subnet = nn.Sequential(*cls_subnet)
        self.bbox_subnet = nn.Sequential(*bbox_subnet)
        self.cls_score = nn.Conv2d(
            conv_dims[-1], num_anchors * num_classes, kernel_size=3, stride=1, padding=1
        )
        self.bbox_pred = nn.Conv2d(
            conv_dims[-1], num_anchors * 4, kernel_size=3, stride=1, padding=1
        )

        for modules in [self.cls_subnet, self.bbox_subnet, self.cls_score, self.bbox_pred]:
            for layer in modules.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, mean=0, std=0.01)
                    nn.init.constant_(layer.bias, 0)

        # Every anchor starts as foreground with probability prior_prob, so that the many
        # background anchors do not swamp the first iterations' loss.
        bias_value = -(math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(self.cls_score.bias, bias_value)

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]) -> dict:
        num_anchors = build_anchor_generator(cfg, input_shape).num_cell_anchors
        if len(set(num_anchors)) != 1:
            raise ValueError(
                f"Using different number of anchors between levels is not currently supported: "
                f"{num_anchors}"
            )
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "conv_dims": [input_shape[0].channels] * cfg.MODEL.RETINANET.NUM_CONVS,
            "prior_prob": cfg.MODEL.RETINANET.PRIOR_PROB,
            "norm": cfg.MODEL.RETINANET.NORM,
            "num_anchors": num_anchors[0],
        }

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            features (list[Tensor[N, C, Hi, Wi]]): the feature maps, one per level.

        Returns:
            logits (list[Tensor[N, A * K, Hi, Wi]]): per level.
            bbox_reg (list[Tensor[N, A * 4, Hi, Wi]]): per level.
        """
        if len(features) != self._num_features:
            raise ValueError(
                f"{type(self).__name__}: got {len(features)} feature maps, built for "
                f"{self._num_features}"
            )
        logits = []
        bbox_reg = []
        for feature in features:
            logits.append(self.cls_score(self.cls_subnet(feature)))
            bbox_reg.append(self.bbox_pred(self.bbox_subnet(feature)))
        return logits, bbox_reg

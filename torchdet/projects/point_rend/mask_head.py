"""PointRend's mask head for R-CNN: a coarse conv-FC mask predictor refined at points by a point
head; at inference, adaptive subdivision upsamples the mask 2x per step and re-predicts only
the most uncertain points.

Shape shorthand: R regions, K classes, S coarse side (``OUTPUT_SIDE_RESOLUTION``), P points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import Conv2d, ShapeSpec, cat
from torchdet.modeling.roi_heads import (
    ROI_MASK_HEAD_REGISTRY,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from torchdet.modeling.weight_init import c2_msra_fill, c2_xavier_fill
from torchdet.structures import Boxes, Instances

from .point_features import (
    generate_regular_grid_point_coords,
    get_point_coords_wrt_image,
    get_uncertain_point_coords_on_grid,
    get_uncertain_point_coords_with_randomness,
    point_sample,
    point_sample_fine_grained_features,
    sample_point_labels,
)
from .point_head import build_point_head, roi_mask_point_loss

__all__ = ["ConvFCHead", "ImplicitPointRendMaskHead", "PointRendMaskHead", "calculate_uncertainty"]


def calculate_uncertainty(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Uncertainty of mask logits: ``-|logit|`` of each region's class (0 is most uncertain).

    Args:
        logits (Tensor[R, K, ...]): class-specific (K > 1) or class-agnostic (K = 1) logits.
        classes (Tensor[R]): the class of each region (ignored when K = 1).

    Returns:
        Tensor[R, 1, ...].
    """
    if logits.shape[1] == 1:
        class_logits = logits.clone()
    else:
        rows = torch.arange(logits.shape[0], device=logits.device)
        class_logits = logits[rows, classes].unsqueeze(1)
    return -torch.abs(class_logits)


class ConvFCHead(nn.Module):
    """Coarse mask predictor: a 1x1 conv, a stride-2 2x2 conv, FC layers and a linear layer
    predicting ``output_shape`` logits per region.

    Parameters: ``reduce_channel_dim_conv``, ``reduce_spatial_dim_conv``, ``fc1`` ...,
    ``prediction``.
    """

    _version = 2

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        conv_dim: int,
        fc_dims: Sequence[int],
        output_shape: tuple[int, int, int],
    ):
        """
        Args:
            input_shape: channels, height and width of the pooled region features.
            conv_dim: channels of the two convs.
            fc_dims: width of each FC layer (at least one).
            output_shape: (K, S, S) of the predicted logits.
        """
        super().__init__()
        if len(fc_dims) == 0:
            raise ValueError("ConvFCHead: fc_dims must not be empty")
        self.output_shape = tuple(output_shape)
        self.conv_layers = []
        in_channels = input_shape.channels
        # The 1x1 channel reduction exists only when the input is wider than conv_dim (the
        # checkpoints of narrower inputs have no such parameters).
        if in_channels > conv_dim:
            self.reduce_channel_dim_conv = Conv2d(
                in_channels, conv_dim, kernel_size=1, bias=True, activation=F.relu
            )
            self.conv_layers.append(self.reduce_channel_dim_conv)
            in_channels = conv_dim
        self.reduce_spatial_dim_conv = Conv2d(
            in_channels, conv_dim, kernel_size=2, stride=2, padding=0, bias=True, activation=F.relu
        )
        self.conv_layers.append(self.reduce_spatial_dim_conv)
        input_dim = conv_dim * input_shape.height * input_shape.width // 4
        self.fcs = []
        for k, fc_dim in enumerate(fc_dims):
            fc = nn.Linear(input_dim, fc_dim)
            self.add_module(f"fc{k + 1}", fc)
            self.fcs.append(fc)
            input_dim = fc_dim
        self.prediction = nn.Linear(fc_dims[-1], int(np.prod(self.output_shape)))
        # Small initial logits so the coarse prediction starts near 0.5 everywhere.
        nn.init.normal_(self.prediction.weight, std=0.001)
        nn.init.constant_(self.prediction.bias, 0)
        for layer in self.conv_layers:
            c2_msra_fill(layer)
        for layer in self.fcs:
            c2_xavier_fill(layer)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        side = cfg.MODEL.ROI_MASK_HEAD.OUTPUT_SIDE_RESOLUTION
        num_classes = (
            1 if cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES
        )
        return {
            "input_shape": input_shape,
            "conv_dim": cfg.MODEL.ROI_MASK_HEAD.CONV_DIM,
            "fc_dims": [cfg.MODEL.ROI_MASK_HEAD.FC_DIM] * cfg.MODEL.ROI_MASK_HEAD.NUM_FC,
            "output_shape": (num_classes, side, side),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, H, W) region features -> (R, K, S, S) logits."""
        n = x.shape[0]
        for layer in self.conv_layers:
            x = layer(x)
        x = torch.flatten(x, start_dim=1)
        for layer in self.fcs:
            x = F.relu(layer(x))
        return self.prediction(x).view(n, *self.output_shape)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args, **kwargs):
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            # Version 1 named the FC layers coarse_mask_fc1, coarse_mask_fc2, ...
            for k in list(state_dict):
                if k.startswith(prefix) and "coarse_mask_fc" in k:
                    state_dict[k.replace("coarse_mask_fc", "fc")] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args, **kwargs)


@ROI_MASK_HEAD_REGISTRY.register()
class PointRendMaskHead(nn.Module):
    """PointRend mask head. Used by ``StandardROIHeads`` with ``ROI_MASK_HEAD.POOLER_TYPE: ""``
    (it pools its own features from the dict of feature maps).

    Training losses: ``loss_mask`` (coarse) and ``loss_mask_point``; inference sets
    ``pred_masks`` (Tensor[R, 1, S * 2**steps, S * 2**steps]).
    """

    def __init__(self, cfg, input_shape: dict[str, ShapeSpec]):
        super().__init__()
        if not isinstance(input_shape, dict):
            raise TypeError(
                "PointRendMaskHead takes the dict of feature shapes: set "
                "MODEL.ROI_MASK_HEAD.POOLER_TYPE to '' (got a single ShapeSpec)"
            )
        self._feature_scales = {k: 1.0 / v.stride for k, v in input_shape.items()}
        self._init_point_head(cfg, input_shape)
        self.roi_pooler_in_features = list(cfg.MODEL.ROI_MASK_HEAD.IN_FEATURES)
        self.roi_pooler_size = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        missing = [f for f in self.roi_pooler_in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.ROI_MASK_HEAD.IN_FEATURES {missing} are not among the features given to "
                f"the mask head ({list(input_shape)})"
            )
        in_channels = int(sum(input_shape[f].channels for f in self.roi_pooler_in_features))
        self._init_roi_head(
            cfg,
            ShapeSpec(
                channels=in_channels, width=self.roi_pooler_size, height=self.roi_pooler_size
            ),
        )

    def _init_roi_head(self, cfg, input_shape: ShapeSpec) -> None:
        self.coarse_head = ConvFCHead(cfg, input_shape)

    def _init_point_head(self, cfg, input_shape: dict[str, ShapeSpec]) -> None:
        self.mask_point_on = cfg.MODEL.ROI_MASK_HEAD.POINT_HEAD_ON
        if not self.mask_point_on:
            return
        if cfg.MODEL.ROI_HEADS.NUM_CLASSES != cfg.MODEL.POINT_HEAD.NUM_CLASSES:
            raise ValueError(
                f"MODEL.POINT_HEAD.NUM_CLASSES ({cfg.MODEL.POINT_HEAD.NUM_CLASSES}) must equal "
                f"MODEL.ROI_HEADS.NUM_CLASSES ({cfg.MODEL.ROI_HEADS.NUM_CLASSES})"
            )
        self.mask_point_in_features = list(cfg.MODEL.POINT_HEAD.IN_FEATURES)
        missing = [f for f in self.mask_point_in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.POINT_HEAD.IN_FEATURES {missing} are not among the features given to "
                f"the mask head ({list(input_shape)})"
            )
        self.mask_point_train_num_points = cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS
        self.mask_point_oversample_ratio = cfg.MODEL.POINT_HEAD.OVERSAMPLE_RATIO
        self.mask_point_importance_sample_ratio = cfg.MODEL.POINT_HEAD.IMPORTANCE_SAMPLE_RATIO
        # Adaptive subdivision at inference.
        self.mask_point_subdivision_init_resolution = cfg.MODEL.ROI_MASK_HEAD.OUTPUT_SIDE_RESOLUTION
        self.mask_point_subdivision_steps = cfg.MODEL.POINT_HEAD.SUBDIVISION_STEPS
        self.mask_point_subdivision_num_points = cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS
        in_channels = int(sum(input_shape[f].channels for f in self.mask_point_in_features))
        self.point_head = build_point_head(cfg, ShapeSpec(channels=in_channels, width=1, height=1))
        # A step that would re-predict every cell of the upsampled mask is the same as starting
        # from a twice finer regular grid: skip such steps.
        while (
            4 * self.mask_point_subdivision_init_resolution**2
            <= self.mask_point_subdivision_num_points
        ):
            self.mask_point_subdivision_init_resolution *= 2
            self.mask_point_subdivision_steps -= 1

    def forward(self, features: dict[str, torch.Tensor], instances: list[Instances]):
        """
        Args:
            features: feature maps by name (Tensor[N, C, H, W]).
            instances: training: foreground proposals with ``gt_classes`` and ``gt_masks``;
                inference: detections with ``pred_boxes`` and ``pred_classes``.

        Returns:
            Training: ``{"loss_mask", "loss_mask_point"}``; inference: ``instances`` with
            ``pred_masks``.
        """
        if self.training:
            proposal_boxes = [x.proposal_boxes for x in instances]
            coarse_mask = self.coarse_head(self._roi_pooler(features, proposal_boxes))
            losses = {"loss_mask": mask_rcnn_loss(coarse_mask, instances)}
            if not self.mask_point_on:
                return losses
            point_coords, point_labels = self._sample_train_points(coarse_mask, instances)
            point_features = self._point_pooler(features, proposal_boxes, point_coords)
            point_logits = self._get_point_logits(point_features, point_coords, coarse_mask)
            losses["loss_mask_point"] = roi_mask_point_loss(point_logits, instances, point_labels)
            return losses
        pred_boxes = [x.pred_boxes for x in instances]
        coarse_mask = self.coarse_head(self._roi_pooler(features, pred_boxes))
        if not self.mask_point_on:
            mask_rcnn_inference(coarse_mask, instances)
            return instances
        return self._subdivision_inference(features, coarse_mask, instances)

    def _roi_pooler(self, features: dict[str, torch.Tensor], boxes: list[Boxes]) -> torch.Tensor:
        """Region features on a regular grid (RoIAlign with one aligned sample per bin),
        the levels concatenated: Tensor[R, sum C, G, G]."""
        features_list = [features[k] for k in self.roi_pooler_in_features]
        scales = [self._feature_scales[k] for k in self.roi_pooler_in_features]
        num_boxes = sum(len(b) for b in boxes)
        size = self.roi_pooler_size
        point_coords = generate_regular_grid_point_coords(num_boxes, size, features_list[0].device)
        roi_features, _ = point_sample_fine_grained_features(
            features_list, scales, boxes, point_coords
        )
        return roi_features.view(num_boxes, roi_features.shape[1], size, size)

    def _sample_train_points(self, coarse_mask: torch.Tensor, instances: list[Instances]):
        gt_classes = cat([x.gt_classes for x in instances])
        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                coarse_mask,
                lambda logits: calculate_uncertainty(logits, gt_classes),
                self.mask_point_train_num_points,
                self.mask_point_oversample_ratio,
                self.mask_point_importance_sample_ratio,
            )
            cat_boxes = Boxes.cat([x.proposal_boxes for x in instances])
            point_coords_wrt_image = get_point_coords_wrt_image(cat_boxes.tensor, point_coords)
            point_labels = sample_point_labels(instances, point_coords_wrt_image)
        return point_coords, point_labels

    def _point_pooler(
        self, features: dict[str, torch.Tensor], boxes: list[Boxes], point_coords: torch.Tensor
    ) -> torch.Tensor:
        features_list = [features[k] for k in self.mask_point_in_features]
        scales = [self._feature_scales[k] for k in self.mask_point_in_features]
        point_features, _ = point_sample_fine_grained_features(
            features_list, scales, boxes, point_coords
        )
        return point_features

    def _get_point_logits(
        self, point_features: torch.Tensor, point_coords: torch.Tensor, coarse_mask: torch.Tensor
    ) -> torch.Tensor:
        coarse_features = point_sample(coarse_mask, point_coords, align_corners=False)
        return self.point_head(point_features, coarse_features)

    def _subdivision_inference(
        self,
        features: dict[str, torch.Tensor],
        mask_representations: torch.Tensor,
        instances: list[Instances],
    ) -> list[Instances]:
        pred_boxes = [x.pred_boxes for x in instances]
        pred_classes = cat([x.pred_classes for x in instances])
        device = mask_representations.device
        side = self.mask_point_subdivision_init_resolution

        # Step 0 predicts every cell of a regular grid (the coarse S x S mask is too coarse
        # to be worth keeping); each later step upsamples 2x and re-predicts uncertain cells.
        point_coords = generate_regular_grid_point_coords(pred_classes.size(0), side, device)
        point_features = self._point_pooler(features, pred_boxes, point_coords)
        point_logits = self._get_point_logits(point_features, point_coords, mask_representations)
        R, C, _ = point_logits.shape
        mask_logits = point_logits.reshape(R, C, side, side)
        if R == 0:
            mask_rcnn_inference(mask_logits, instances)
            return instances
        for _ in range(self.mask_point_subdivision_steps):
            mask_logits = F.interpolate(
                mask_logits, scale_factor=2, mode="bilinear", align_corners=False
            )
            uncertainty_map = calculate_uncertainty(mask_logits, pred_classes)
            point_indices, point_coords = get_uncertain_point_coords_on_grid(
                uncertainty_map, self.mask_point_subdivision_num_points
            )
            point_features = self._point_pooler(features, pred_boxes, point_coords)
            point_logits = self._get_point_logits(
                point_features, point_coords, mask_representations
            )
            R, C, H, W = mask_logits.shape
            index = point_indices.unsqueeze(1).expand(-1, C, -1)
            mask_logits = mask_logits.reshape(R, C, H * W).scatter(2, index, point_logits)
            mask_logits = mask_logits.view(R, C, H, W)
        mask_rcnn_inference(mask_logits, instances)
        return instances


@ROI_MASK_HEAD_REGISTRY.register()
class ImplicitPointRendMaskHead(PointRendMaskHead):
    """Implicit PointRend ("PointRend: Image Segmentation as Rendering", follow-up in
    "Pointly-supervised instance segmentation", Cheng et al. 2022): a ConvFC head predicts,
    per region, the parameters of the point MLP (:class:`ImplicitPointHead`); training uses
    uniformly sampled points.

    Training losses: ``loss_mask_point`` and ``loss_l2`` (L2 regulariser of the parameters).
    """

    def _init_roi_head(self, cfg, input_shape: ShapeSpec) -> None:
        self.parameter_head = ConvFCHead(cfg, input_shape, output_shape=(self.num_params,))
        self.regularizer = cfg.MODEL.IMPLICIT_POINTREND.PARAMS_L2_REGULARIZER

    def _init_point_head(self, cfg, input_shape: dict[str, ShapeSpec]) -> None:
        self.mask_point_on = True
        if cfg.MODEL.ROI_HEADS.NUM_CLASSES != cfg.MODEL.POINT_HEAD.NUM_CLASSES:
            raise ValueError(
                f"MODEL.POINT_HEAD.NUM_CLASSES ({cfg.MODEL.POINT_HEAD.NUM_CLASSES}) must equal "
                f"MODEL.ROI_HEADS.NUM_CLASSES ({cfg.MODEL.ROI_HEADS.NUM_CLASSES})"
            )
        self.mask_point_in_features = list(cfg.MODEL.POINT_HEAD.IN_FEATURES)
        missing = [f for f in self.mask_point_in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.POINT_HEAD.IN_FEATURES {missing} are not among the features given to "
                f"the mask head ({list(input_shape)})"
            )
        self.mask_point_train_num_points = cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS
        self.mask_point_subdivision_steps = cfg.MODEL.POINT_HEAD.SUBDIVISION_STEPS
        self.mask_point_subdivision_num_points = cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS
        in_channels = int(sum(input_shape[f].channels for f in self.mask_point_in_features))
        self.point_head = build_point_head(cfg, ShapeSpec(channels=in_channels, width=1, height=1))
        if not hasattr(self.point_head, "num_params"):
            raise TypeError(
                "ImplicitPointRendMaskHead needs a point head with predicted parameters "
                f"(MODEL.POINT_HEAD.NAME: ImplicitPointHead), got {type(self.point_head).__name__}"
            )
        self.num_params = self.point_head.num_params
        # Inference starts from a regular grid of SUBDIVISION_NUM_POINTS points.
        side = int(math.sqrt(self.mask_point_subdivision_num_points))
        if side * side != self.mask_point_subdivision_num_points:
            raise ValueError(
                "Implicit PointRend needs a square MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS, got "
                f"{self.mask_point_subdivision_num_points}"
            )
        self.mask_point_subdivision_init_resolution = side

    def forward(self, features: dict[str, torch.Tensor], instances: list[Instances]):
        """As :meth:`PointRendMaskHead.forward`; training returns ``loss_l2`` and
        ``loss_mask_point``."""
        if self.training:
            proposal_boxes = [x.proposal_boxes for x in instances]
            parameters = self.parameter_head(self._roi_pooler(features, proposal_boxes))
            losses = {"loss_l2": self.regularizer * (parameters**2).mean()}
            point_coords, point_labels = self._uniform_sample_train_points(instances)
            point_features = self._point_pooler(features, proposal_boxes, point_coords)
            point_logits = self._get_point_logits(point_features, point_coords, parameters)
            losses["loss_mask_point"] = roi_mask_point_loss(point_logits, instances, point_labels)
            return losses
        pred_boxes = [x.pred_boxes for x in instances]
        parameters = self.parameter_head(self._roi_pooler(features, pred_boxes))
        return self._subdivision_inference(features, parameters, instances)

    def _uniform_sample_train_points(self, instances: list[Instances]):
        cat_boxes = Boxes.cat([x.proposal_boxes for x in instances])
        point_coords = torch.rand(
            len(cat_boxes), self.mask_point_train_num_points, 2, device=cat_boxes.tensor.device
        )
        point_coords_wrt_image = get_point_coords_wrt_image(cat_boxes.tensor, point_coords)
        point_labels = sample_point_labels(instances, point_coords_wrt_image)
        return point_coords, point_labels

    def _get_point_logits(
        self, point_features: torch.Tensor, point_coords: torch.Tensor, parameters: torch.Tensor
    ) -> torch.Tensor:
        return self.point_head(point_features, point_coords, parameters)

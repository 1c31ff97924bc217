"""Cascade R-CNN RoI heads: a sequence of box heads, each refining the previous one's boxes
and trained against ground truth matched at a higher IoU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import Function

from torchdet.config import configurable
from torchdet.layers import ShapeSpec
from torchdet.structures import Boxes, ImageList, Instances, pairwise_iou

from ..box_regression import Box2BoxTransform
from ..matcher import Matcher
from ..poolers import ROIPooler
from .box_head import build_box_head
from .events import name_scope, put_scalars
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from .roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, _check_training_targets

__all__ = ["CascadeROIHeads"]


class _ScaleGradient(Function):
    """Identity in the forward pass; multiplies the gradient by ``scale`` backwards."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return input

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * ctx.scale, None


@ROI_HEADS_REGISTRY.register()
class CascadeROIHeads(StandardROIHeads):
    """The RoI heads of Cascade R-CNN (Cai and Vasconcelos, 2018).

    Stage k pools features for the boxes predicted by stage k - 1 (the proposals for stage
    0). At inference the class scores are averaged over stages and the last stage's boxes
    are kept. Parameters are ``box_head.<k>.*`` and ``box_predictor.<k>.*``; the losses are
    ``loss_cls_stage<k>`` and ``loss_box_reg_stage<k>``.
    """

    @configurable
    def __init__(
        self,
        *,
        box_in_features: list[str],
        box_pooler: ROIPooler,
        box_heads: list[nn.Module],
        box_predictors: list[nn.Module],
        proposal_matchers: list[Matcher],
        **kwargs,
    ):
        """
        Args:
            box_pooler: pools the box features (shared by the stages).
            box_heads, box_predictors: one per stage.
            proposal_matchers: one per stage, with increasing IoU thresholds.
            kwargs: passed to ``StandardROIHeads`` (without ``proposal_matcher``: the first
                stage's is used).
        """
        if "proposal_matcher" in kwargs:
            raise ValueError(
                "CascadeROIHeads takes proposal_matchers (one per stage), not proposal_matcher"
            )
        self.num_cascade_stages = num_stages = len(box_heads)
        if not (len(box_predictors) == num_stages == len(proposal_matchers)):
            raise ValueError(
                f"CascadeROIHeads: {len(box_heads)} box heads, {len(box_predictors)} predictors "
                f"and {len(proposal_matchers)} matchers must agree"
            )
        # The first stage's matcher labels the sampled proposals.
        kwargs["proposal_matcher"] = proposal_matchers[0]
        super().__init__(
            box_in_features=box_in_features,
            box_pooler=box_pooler,
            box_head=nn.ModuleList(box_heads),
            box_predictor=nn.ModuleList(box_predictors),
            **kwargs,
        )
        self.num_cascade_stages = num_stages
        self.proposal_matchers = proposal_matchers

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        ret.pop("proposal_matcher")
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        pooler_resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        pooler_scales = tuple(1.0 / input_shape[k].stride for k in in_features)
        sampling_ratio = cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO
        pooler_type = cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE

        cascade_bbox_reg_weights = cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS
        cascade_ious = cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS
        if len(cascade_bbox_reg_weights) != len(cascade_ious):
            raise ValueError(
                "MODEL.ROI_BOX_CASCADE_HEAD: BBOX_REG_WEIGHTS and IOUS must have one entry per "
                f"stage, got {len(cascade_bbox_reg_weights)} and {len(cascade_ious)}"
            )
        if not cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG:
            raise ValueError("CascadeROIHeads needs MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG=True")
        if cascade_ious[0] != cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]:
            raise ValueError(
                f"MODEL.ROI_BOX_CASCADE_HEAD.IOUS[0] ({cascade_ious[0]}) must equal "
                f"MODEL.ROI_HEADS.IOU_THRESHOLDS[0] ({cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]})"
            )
        in_channels = cls._in_channels(in_features, input_shape, "MODEL.ROI_HEADS.IN_FEATURES")

        box_pooler = ROIPooler(
            output_size=pooler_resolution,
            scales=pooler_scales,
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        pooled_shape = ShapeSpec(
            channels=in_channels, width=pooler_resolution, height=pooler_resolution
        )

        box_heads, box_predictors, proposal_matchers = [], [], []
        for match_iou, bbox_reg_weights in zip(cascade_ious, cascade_bbox_reg_weights):
            box_head = build_box_head(cfg, pooled_shape)
            box_heads.append(box_head)
            box_predictors.append(
                FastRCNNOutputLayers(
                    cfg,
                    box_head.output_shape,
                    box2box_transform=Box2BoxTransform(weights=bbox_reg_weights),
                )
            )
            proposal_matchers.append(Matcher([match_iou], [0, 1], allow_low_quality_matches=False))
        return {
            "box_in_features": in_features,
            "box_pooler": box_pooler,
            "box_heads": box_heads,
            "box_predictors": box_predictors,
            "proposal_matchers": proposal_matchers,
        }

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ):
        """See ``ROIHeads.forward``."""
        del images
        if self.training:
            _check_training_targets(self.training, targets)
            proposals = self.label_and_sample_proposals(proposals, targets)

        if self.training:
            # The box heads need the targets (each stage re-matches its boxes).
            losses = self._forward_box(features, proposals, targets)
            losses.update(self._forward_mask(features, proposals))
            losses.update(self._forward_keypoint(features, proposals))
            return proposals, losses
        pred_instances = self._forward_box(features, proposals)
        pred_instances = self.forward_with_given_boxes(features, pred_instances)
        return pred_instances, {}

    def _forward_box(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ):
        """Run the stages.

        Returns:
            In training the losses of every stage; at inference the detections.
        """
        features = [features[f] for f in self.box_in_features]
        head_outputs = []  # (predictor, predictions, proposals) of each stage
        prev_pred_boxes = None
        image_sizes = [x.image_size for x in proposals]
        for k in range(self.num_cascade_stages):
            if k > 0:
                # The previous stage's boxes are this stage's proposals.
                proposals = self._create_proposals_from_boxes(prev_pred_boxes, image_sizes)
                if self.training:
                    proposals = self._match_and_label_boxes(proposals, k, targets)
            predictions = self._run_stage(features, proposals, k)
            prev_pred_boxes = self.box_predictor[k].predict_boxes(predictions, proposals)
            head_outputs.append((self.box_predictor[k], predictions, proposals))

        if self.training:
            losses = {}
            for stage, (predictor, predictions, proposals) in enumerate(head_outputs):
                with name_scope(f"stage{stage}"):
                    stage_losses = predictor.losses(predictions, proposals)
                losses.update({f"{k}_stage{stage}": v for k, v in stage_losses.items()})
            return losses

        # Average the class probabilities of all stages (summed in stage order, as the
        # reference, so that the floating-point result is the same).
        scores_per_stage = [h[0].predict_probs(h[1], h[2]) for h in head_outputs]
        scores = [
            sum(list(scores_per_image)) * (1.0 / self.num_cascade_stages)
            for scores_per_image in zip(*scores_per_stage)
        ]
        predictor, predictions, proposals = head_outputs[-1]
        boxes = predictor.predict_boxes(predictions, proposals)
        pred_instances, _ = fast_rcnn_inference(
            boxes,
            scores,
            image_sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        return pred_instances

    @torch.no_grad()
    def _match_and_label_boxes(
        self, proposals: list[Instances], stage: int, targets: list[Instances]
    ) -> list[Instances]:
        """Label every box of a stage > 0 with the ground truth it matches at the stage's IoU
        (no sampling: all boxes are used).

        Returns:
            list[Instances]: the proposals with ``gt_classes`` and ``gt_boxes``.
        """
        num_fg_samples, num_bg_samples = [], []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            match_quality_matrix = pairwise_iou(
                targets_per_image.gt_boxes, proposals_per_image.proposal_boxes
            )
            matched_idxs, proposal_labels = self.proposal_matchers[stage](match_quality_matrix)
            if len(targets_per_image) > 0:
                gt_classes = targets_per_image.gt_classes[matched_idxs]
                gt_classes[proposal_labels == 0] = self.num_classes
                gt_boxes = targets_per_image.gt_boxes[matched_idxs]
            else:
                gt_classes = torch.zeros_like(matched_idxs) + self.num_classes
                gt_boxes = Boxes(
                    targets_per_image.gt_boxes.tensor.new_zeros((len(proposals_per_image), 4))
                )
            proposals_per_image.gt_classes = gt_classes
            proposals_per_image.gt_boxes = gt_boxes

            num_fg_samples.append((proposal_labels == 1).sum().item())
            num_bg_samples.append(proposal_labels.numel() - num_fg_samples[-1])

        put_scalars(
            **{
                f"stage{stage}/roi_head/num_fg_samples": sum(num_fg_samples) / len(num_fg_samples),
                f"stage{stage}/roi_head/num_bg_samples": sum(num_bg_samples) / len(num_bg_samples),
            }
        )
        return proposals

    def _run_stage(self, features: list[torch.Tensor], proposals: list[Instances], stage: int):
        """Box head and predictor of one stage.

        Returns:
            ``(scores, proposal_deltas)`` of the stage's predictor.
        """
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        # Every stage backpropagates into the shared features: scale each by 1/stages so
        # that their sum has the magnitude of one head's gradient.
        if self.training:
            box_features = _ScaleGradient.apply(box_features, 1.0 / self.num_cascade_stages)
        box_features = self.box_head[stage](box_features)
        return self.box_predictor[stage](box_features)

    def _create_proposals_from_boxes(
        self, boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[Instances]:
        """Proposals (``proposal_boxes``) from predicted boxes, clipped to the image (and
        without empty boxes in training)."""
        boxes = [Boxes(b.detach()) for b in boxes]
        proposals = []
        for boxes_per_image, image_size in zip(boxes, image_sizes):
            boxes_per_image.clip(image_size)
            if self.training:
                # Empty boxes would give NaN regression targets.
                boxes_per_image = boxes_per_image[boxes_per_image.nonempty()]
            prop = Instances(image_size)
            prop.proposal_boxes = boxes_per_image
            proposals.append(prop)
        return proposals

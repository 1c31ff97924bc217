"""RoI heads: the second stage of R-CNN models, predicting instances from proposals.

``ROIHeads`` matches and samples proposals in training; ``StandardROIHeads`` pools features
for separate box, mask and keypoint heads (FPN and DC5 models); ``Res5ROIHeads`` runs a
shared ResNet ``res5`` stage on pooled features (C4 models).

Shape shorthand: N images, Ri proposals of image i, K foreground classes (background is
class K), C channels.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import torch
from torch import nn

from torchdet.config import configurable
from torchdet.layers import ShapeSpec, nonzero_tuple
from torchdet.structures import Boxes, ImageList, Instances, pairwise_iou
from torchdet.utils.registry import Registry

from ..backbone.resnet import BottleneckBlock, ResNet
from ..matcher import Matcher
from ..poolers import ROIPooler
from ..proposal_generator.proposal_utils import add_ground_truth_to_proposals
from ..sampling import subsample_labels
from .box_head import build_box_head
from .events import put_scalars
from .fast_rcnn import FastRCNNOutputLayers
from .keypoint_head import build_keypoint_head
from .mask_head import build_mask_head

__all__ = [
    "ROI_HEADS_REGISTRY",
    "ROIHeads",
    "Res5ROIHeads",
    "StandardROIHeads",
    "build_roi_heads",
    "select_foreground_proposals",
    "select_proposals_with_visible_keypoints",
]

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = """
Registry for RoI heads, the per-region second stage of R-CNN models.

A registered object is called as ``obj(cfg, input_shape: dict[str, ShapeSpec])``.
"""

logger = logging.getLogger(__name__)


def build_roi_heads(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Build the RoI heads named by ``cfg.MODEL.ROI_HEADS.NAME``."""
    name = cfg.MODEL.ROI_HEADS.NAME
    return ROI_HEADS_REGISTRY.get(name)(cfg, input_shape)


def select_foreground_proposals(
    proposals: list[Instances], bg_label: int
) -> tuple[list[Instances], list[torch.Tensor]]:
    """Keep the foreground proposals (``gt_classes`` neither -1 nor ``bg_label``).

    Args:
        proposals (list[Instances]): per image, with ``gt_classes``.
        bg_label (int): the background class.

    Returns:
        list[Instances]: per image, the foreground proposals.
        list[Tensor[Ri] bool]: per image, the foreground mask over the input proposals.
    """
    if not isinstance(proposals, list | tuple):
        raise TypeError(f"proposals must be a list of Instances, got {type(proposals).__name__}")
    if len(proposals) and not proposals[0].has("gt_classes"):
        raise KeyError("select_foreground_proposals: proposals need a 'gt_classes' field")
    fg_proposals = []
    fg_selection_masks = []
    for proposals_per_image in proposals:
        gt_classes = proposals_per_image.gt_classes
        fg_selection_mask = (gt_classes != -1) & (gt_classes != bg_label)
        fg_idxs = nonzero_tuple(fg_selection_mask)[0]
        fg_proposals.append(proposals_per_image[fg_idxs])
        fg_selection_masks.append(fg_selection_mask)
    return fg_proposals, fg_selection_masks


def select_proposals_with_visible_keypoints(proposals: list[Instances]) -> list[Instances]:
    """Keep the proposals holding at least one visible ground-truth keypoint inside them.

    Args:
        proposals (list[Instances]): per image, with ``proposal_boxes`` and ``gt_keypoints``.

    Returns:
        list[Instances]: per image, the selected proposals.
    """
    ret = []
    all_num_fg = []
    for proposals_per_image in proposals:
        if len(proposals_per_image) == 0:
            ret.append(proposals_per_image)
            continue
        gt_keypoints = proposals_per_image.gt_keypoints.tensor  # (R, K, 3)
        vis_mask = gt_keypoints[:, :, 2] >= 1
        xs, ys = gt_keypoints[:, :, 0], gt_keypoints[:, :, 1]
        proposal_boxes = proposals_per_image.proposal_boxes.tensor.unsqueeze(dim=1)  # (R, 1, 4)
        kp_in_box = (
            (xs >= proposal_boxes[:, :, 0])
            & (xs <= proposal_boxes[:, :, 2])
            & (ys >= proposal_boxes[:, :, 1])
            & (ys <= proposal_boxes[:, :, 3])
        )
        selection = (kp_in_box & vis_mask).any(dim=1)
        selection_idxs = nonzero_tuple(selection)[0]
        all_num_fg.append(selection_idxs.numel())
        ret.append(proposals_per_image[selection_idxs])
    if all_num_fg:
        put_scalars(**{"keypoint_head/num_fg_samples": float(np.mean(all_num_fg))})
    return ret


class ROIHeads(nn.Module):
    """The base of RoI heads: matching proposals to ground truth and sampling them.

    Subclasses implement ``forward``.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        batch_size_per_image: int,
        positive_fraction: float,
        proposal_matcher: Matcher,
        proposal_append_gt: bool = True,
    ):
        """
        Args:
            num_classes: K, the foreground classes.
            batch_size_per_image: proposals sampled per image for training.
            positive_fraction: largest foreground share of the sampled proposals.
            proposal_matcher: labels proposals foreground / background by IoU.
            proposal_append_gt: add the ground-truth boxes to the proposals in training.
        """
        super().__init__()
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.num_classes = num_classes
        self.proposal_matcher = proposal_matcher
        self.proposal_append_gt = proposal_append_gt

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            "batch_size_per_image": cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "proposal_append_gt": cfg.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT,
            # Proposals are not labelled by low-quality matches (unlike RPN anchors).
            "proposal_matcher": Matcher(
                cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS,
                cfg.MODEL.ROI_HEADS.IOU_LABELS,
                allow_low_quality_matches=False,
            ),
        }

    def _sample_proposals(
        self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor, gt_classes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample a balanced minibatch of proposals and give each its class.

        Args:
            matched_idxs (Tensor[R]): the matched ground truth of each proposal.
            matched_labels (Tensor[R]): the matcher's labels (1, 0, -1).
            gt_classes (Tensor[G]): the classes of the ground truth.

        Returns:
            sampled_idxs (Tensor[S]): indices of the sampled proposals.
            gt_classes (Tensor[S]): their classes; K for background, -1 ignored.
        """
        has_gt = gt_classes.numel() > 0
        if has_gt:
            gt_classes = gt_classes[matched_idxs]
            gt_classes[matched_labels == 0] = self.num_classes
            gt_classes[matched_labels == -1] = -1
        else:
            gt_classes = torch.zeros_like(matched_idxs) + self.num_classes

        sampled_fg_idxs, sampled_bg_idxs = subsample_labels(
            gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
        )
        sampled_idxs = torch.cat([sampled_fg_idxs, sampled_bg_idxs], dim=0)
        return sampled_idxs, gt_classes[sampled_idxs]

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: list[Instances], targets: list[Instances]
    ) -> list[Instances]:
        """Match the proposals to the ground truth and sample the training minibatch.

        Args:
            proposals (list[Instances]): per image, ``proposal_boxes`` (and
                ``objectness_logits``).
            targets (list[Instances]): per image, ``gt_boxes``, ``gt_classes`` and other
                ``gt_*`` fields (masks, keypoints).

        Returns:
            list[Instances]: per image, the sampled proposals with ``gt_classes`` and, when
            the image has ground truth, every ``gt_*`` field of its matched ground truth.
        """
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)

        proposals_with_gt = []
        num_fg_samples = []
        num_bg_samples = []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            has_gt = len(targets_per_image) > 0
            match_quality_matrix = pairwise_iou(
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
                # Copy every ground-truth field (gt_boxes, gt_masks, gt_keypoints...) of the
                # matched object; background proposals get an arbitrary (unused) one.
                for trg_name, trg_value in targets_per_image.get_fields().items():
                    if trg_name.startswith("gt_") and not proposals_per_image.has(trg_name):
                        proposals_per_image.set(trg_name, trg_value[sampled_targets])
            # Without ground truth there is no meaningful dummy value: no gt_boxes field.

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

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ):
        """
        Args:
            images (ImageList): the input images (some heads ignore them).
            features (dict[str, Tensor[N, C, Hi, Wi]]): backbone features by name.
            proposals (list[Instances]): per image, ``proposal_boxes`` and
                ``objectness_logits``.
            targets (list[Instances], optional): per image ground truth, in training.

        Returns:
            list[Instances]: in training the sampled proposals, at inference the detections
            (``pred_boxes``, ``scores``, ``pred_classes``, and masks / keypoints if on).
            dict[str, Tensor]: the losses in training, else ``{}``.
        """
        raise NotImplementedError()


def _check_training_targets(training: bool, targets) -> None:
    if training and targets is None:
        raise ValueError("RoI heads need targets (ground-truth Instances) in training")


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeads(ROIHeads):
    """The RoI heads of C4 models: ResNet's ``res5`` stage runs on features pooled from
    ``res4``, shared by the box predictor (after global average pooling) and the mask head.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: list[str],
        pooler: ROIPooler,
        res5: nn.Module,
        box_predictor: nn.Module,
        mask_head: nn.Module | None = None,
        **kwargs,
    ):
        """
        Args:
            in_features: the single feature map to pool from (e.g. ``["res4"]``).
            pooler: pools the RoI features.
            res5: the stage run on the pooled features.
            box_predictor: e.g. ``FastRCNNOutputLayers`` on the pooled res5 features.
            mask_head: a mask head on the res5 features, or None.
            kwargs: passed to ``ROIHeads``.
        """
        super().__init__(**kwargs)
        self.in_features = in_features
        self.pooler = pooler
        if isinstance(res5, list | tuple):
            res5 = nn.Sequential(*res5)
        self.res5 = res5
        self.box_predictor = box_predictor
        self.mask_on = mask_head is not None
        if self.mask_on:
            self.mask_head = mask_head

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg)
        in_features = ret["in_features"] = cfg.MODEL.ROI_HEADS.IN_FEATURES
        pooler_resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        pooler_type = cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE
        if len(in_features) != 1:
            raise ValueError(
                f"Res5ROIHeads pools from one feature map; MODEL.ROI_HEADS.IN_FEATURES is "
                f"{in_features}"
            )
        if in_features[0] not in input_shape:
            raise KeyError(
                f"MODEL.ROI_HEADS.IN_FEATURES {in_features} is not a backbone output "
                f"(the backbone has {list(input_shape)})"
            )
        pooler_scales = (1.0 / input_shape[in_features[0]].stride,)
        sampling_ratio = cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO
        mask_on = cfg.MODEL.MASK_ON
        ret["pooler"] = ROIPooler(
            output_size=pooler_resolution,
            scales=pooler_scales,
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        ret["res5"], out_channels = cls._build_res5_block(cfg)
        ret["box_predictor"] = FastRCNNOutputLayers(
            cfg, ShapeSpec(channels=out_channels, height=1, width=1)
        )
        if mask_on:
            ret["mask_head"] = build_mask_head(
                cfg,
                ShapeSpec(channels=out_channels, width=pooler_resolution, height=pooler_resolution),
            )
        return ret

    @classmethod
    def _build_res5_block(cls, cfg) -> tuple[nn.Sequential, int]:
        """The res5 stage (3 bottleneck blocks, first with stride 2), as the backbone's."""
        stage_channel_factor = 2**3  # res5 has 8x res2's channels
        num_groups = cfg.MODEL.RESNETS.NUM_GROUPS
        width_per_group = cfg.MODEL.RESNETS.WIDTH_PER_GROUP
        bottleneck_channels = num_groups * width_per_group * stage_channel_factor
        out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * stage_channel_factor
        stride_in_1x1 = cfg.MODEL.RESNETS.STRIDE_IN_1X1
        norm = cfg.MODEL.RESNETS.NORM
        if cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1]:
            raise ValueError("Res5ROIHeads: deformable conv in the res5 RoI head is not supported")
        blocks = ResNet.make_stage(
            BottleneckBlock,
            3,
            stride_per_block=[2, 1, 1],
            in_channels=out_channels // 2,
            bottleneck_channels=bottleneck_channels,
            out_channels=out_channels,
            num_groups=num_groups,
            norm=norm,
            stride_in_1x1=stride_in_1x1,
        )
        return nn.Sequential(*blocks), out_channels

    def _shared_roi_transform(self, features: list[torch.Tensor], boxes: list[Boxes]):
        x = self.pooler(features, boxes)
        return self.res5(x)

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
        del targets

        proposal_boxes = [x.proposal_boxes for x in proposals]
        box_features = self._shared_roi_transform(
            [features[f] for f in self.in_features], proposal_boxes
        )
        predictions = self.box_predictor(box_features.mean(dim=[2, 3]))

        if self.training:
            del features
            losses = self.box_predictor.losses(predictions, proposals)
            if self.mask_on:
                proposals, fg_selection_masks = select_foreground_proposals(
                    proposals, self.num_classes
                )
                # The mask head reuses the res5 features of the foreground proposals.
                mask_features = box_features[torch.cat(fg_selection_masks, dim=0)]
                del box_features
                losses.update(self.mask_head(mask_features, proposals))
            return [], losses
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        pred_instances = self.forward_with_given_boxes(features, pred_instances)
        return pred_instances, {}

    def forward_with_given_boxes(
        self, features: dict[str, torch.Tensor], instances: list[Instances]
    ) -> list[Instances]:
        """Predict the masks of given detections (``pred_boxes``, ``pred_classes``).

        Returns:
            list[Instances]: the same instances, with ``pred_masks`` if the mask head is on.
        """
        if self.training:
            raise RuntimeError("forward_with_given_boxes is for inference (call model.eval())")
        if not (instances[0].has("pred_boxes") and instances[0].has("pred_classes")):
            raise KeyError("forward_with_given_boxes: instances need pred_boxes and pred_classes")
        if self.mask_on:
            feature_list = [features[f] for f in self.in_features]
            x = self._shared_roi_transform(feature_list, [x.pred_boxes for x in instances])
            return self.mask_head(x, instances)
        return instances


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(ROIHeads):
    """Separate box, mask and keypoint heads, each with its own pooler (FPN, DC5 models).

    Each head works on the pooled features of its own ``*_in_features``; the mask and
    keypoint heads run on the foreground proposals in training and on the detections at
    inference.
    """

    @configurable
    def __init__(
        self,
        *,
        box_in_features: list[str],
        box_pooler: ROIPooler,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_in_features: list[str] | None = None,
        mask_pooler: ROIPooler | None = None,
        mask_head: nn.Module | None = None,
        keypoint_in_features: list[str] | None = None,
        keypoint_pooler: ROIPooler | None = None,
        keypoint_head: nn.Module | None = None,
        train_on_pred_boxes: bool = False,
        **kwargs,
    ):
        """
        Args:
            box_in_features: feature maps the box head pools from.
            box_pooler: pools the box features.
            box_head: turns pooled features into per-region features.
            box_predictor: predicts class scores and box deltas (``FastRCNNOutputLayers``).
            mask_in_features, mask_pooler, mask_head: the same for masks (None: no masks);
                without a pooler, the mask head gets ``{name: feature map}`` and pools itself.
            keypoint_in_features, keypoint_pooler, keypoint_head: the same for keypoints.
            train_on_pred_boxes: train the mask / keypoint heads on the box head's predicted
                boxes instead of the proposals.
            kwargs: passed to ``ROIHeads``.
        """
        super().__init__(**kwargs)
        self.in_features = self.box_in_features = box_in_features
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor

        self.mask_on = mask_in_features is not None
        if self.mask_on:
            self.mask_in_features = mask_in_features
            self.mask_pooler = mask_pooler
            self.mask_head = mask_head

        self.keypoint_on = keypoint_in_features is not None
        if self.keypoint_on:
            self.keypoint_in_features = keypoint_in_features
            self.keypoint_pooler = keypoint_pooler
            self.keypoint_head = keypoint_head

        self.train_on_pred_boxes = train_on_pred_boxes

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg)
        ret["train_on_pred_boxes"] = cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES
        # Subclasses may override the _init_*_head methods with plain functions (returning
        # {}), so only call them when they are classmethods.
        if inspect.ismethod(cls._init_box_head):
            ret.update(cls._init_box_head(cfg, input_shape))
        if inspect.ismethod(cls._init_mask_head):
            ret.update(cls._init_mask_head(cfg, input_shape))
        if inspect.ismethod(cls._init_keypoint_head):
            ret.update(cls._init_keypoint_head(cfg, input_shape))
        return ret

    @staticmethod
    def _in_channels(in_features: list[str], input_shape: dict[str, ShapeSpec], key: str) -> int:
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"{key} {missing} are not backbone outputs (the backbone has {list(input_shape)})"
            )
        in_channels = [input_shape[f].channels for f in in_features]
        if len(set(in_channels)) != 1:
            raise ValueError(
                f"{key}: every feature map must have the same channels, got {in_channels}"
            )
        return in_channels[0]

    @classmethod
    def _init_box_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        pooler_resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        pooler_scales = tuple(1.0 / input_shape[k].stride for k in in_features)
        sampling_ratio = cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO
        pooler_type = cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE

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
        box_predictor = FastRCNNOutputLayers(cfg, box_head.output_shape)
        return {
            "box_in_features": in_features,
            "box_pooler": box_pooler,
            "box_head": box_head,
            "box_predictor": box_predictor,
        }

    @classmethod
    def _init_mask_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        if not cfg.MODEL.MASK_ON:
            return {}
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        pooler_resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        pooler_scales = tuple(1.0 / input_shape[k].stride for k in in_features)
        sampling_ratio = cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO
        pooler_type = cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE
        in_channels = cls._in_channels(in_features, input_shape, "MODEL.ROI_HEADS.IN_FEATURES")

        ret = {"mask_in_features": in_features}
        ret["mask_pooler"] = (
            ROIPooler(
                output_size=pooler_resolution,
                scales=pooler_scales,
                sampling_ratio=sampling_ratio,
                pooler_type=pooler_type,
            )
            if pooler_type
            else None
        )
        if pooler_type:
            shape = ShapeSpec(
                channels=in_channels, width=pooler_resolution, height=pooler_resolution
            )
        else:
            shape = {f: input_shape[f] for f in in_features}
        ret["mask_head"] = build_mask_head(cfg, shape)
        return ret

    @classmethod
    def _init_keypoint_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        if not cfg.MODEL.KEYPOINT_ON:
            return {}
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        pooler_resolution = cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION
        pooler_scales = tuple(1.0 / input_shape[k].stride for k in in_features)
        sampling_ratio = cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO
        pooler_type = cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE
        in_channels = cls._in_channels(in_features, input_shape, "MODEL.ROI_HEADS.IN_FEATURES")

        ret = {"keypoint_in_features": in_features}
        ret["keypoint_pooler"] = (
            ROIPooler(
                output_size=pooler_resolution,
                scales=pooler_scales,
                sampling_ratio=sampling_ratio,
                pooler_type=pooler_type,
            )
            if pooler_type
            else None
        )
        if pooler_type:
            shape = ShapeSpec(
                channels=in_channels, width=pooler_resolution, height=pooler_resolution
            )
        else:
            shape = {f: input_shape[f] for f in in_features}
        ret["keypoint_head"] = build_keypoint_head(cfg, shape)
        return ret

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
        del targets

        if self.training:
            losses = self._forward_box(features, proposals)
            # The mask and keypoint heads train on the sampled proposals (or on the box
            # predictions with train_on_pred_boxes, set by _forward_box).
            losses.update(self._forward_mask(features, proposals))
            losses.update(self._forward_keypoint(features, proposals))
            return proposals, losses
        pred_instances = self._forward_box(features, proposals)
        # Masks and keypoints are predicted for the final detections only.
        pred_instances = self.forward_with_given_boxes(features, pred_instances)
        return pred_instances, {}

    def forward_with_given_boxes(
        self, features: dict[str, torch.Tensor], instances: list[Instances]
    ) -> list[Instances]:
        """Predict masks / keypoints of given detections (``pred_boxes``, ``pred_classes``).

        Returns:
            list[Instances]: the same instances with ``pred_masks`` / ``pred_keypoints``.
        """
        if self.training:
            raise RuntimeError("forward_with_given_boxes is for inference (call model.eval())")
        if len(instances) and not (
            instances[0].has("pred_boxes") and instances[0].has("pred_classes")
        ):
            raise KeyError("forward_with_given_boxes: instances need pred_boxes and pred_classes")
        instances = self._forward_mask(features, instances)
        instances = self._forward_keypoint(features, instances)
        return instances

    def _forward_box(self, features: dict[str, torch.Tensor], proposals: list[Instances]):
        """Box head and predictor.

        Returns:
            In training the box losses; at inference the detections (list[Instances]).
        """
        features = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        box_features = self.box_head(box_features)
        predictions = self.box_predictor(box_features)
        del box_features

        if self.training:
            losses = self.box_predictor.losses(predictions, proposals)
            if self.train_on_pred_boxes:
                with torch.no_grad():
                    pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(
                        predictions, proposals
                    )
                    for proposals_per_image, pred_boxes_per_image in zip(proposals, pred_boxes):
                        proposals_per_image.proposal_boxes = Boxes(pred_boxes_per_image)
            return losses
        pred_instances, _ = self.box_predictor.inference(predictions, proposals)
        return pred_instances

    def _forward_mask(self, features: dict[str, torch.Tensor], instances: list[Instances]):
        """Mask head on the foreground proposals (training) or the detections (inference).

        Returns:
            In training the mask losses; at inference the instances with ``pred_masks``.
        """
        if not self.mask_on:
            return {} if self.training else instances

        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)

        if self.mask_pooler is not None:
            features = [features[f] for f in self.mask_in_features]
            boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
            features = self.mask_pooler(features, boxes)
        else:
            features = {f: features[f] for f in self.mask_in_features}
        return self.mask_head(features, instances)

    def _forward_keypoint(self, features: dict[str, torch.Tensor], instances: list[Instances]):
        """Keypoint head on the foreground proposals holding a visible keypoint (training)
        or the detections (inference).

        Returns:
            In training the keypoint losses; at inference the instances with keypoints.
        """
        if not self.keypoint_on:
            return {} if self.training else instances

        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
            instances = select_proposals_with_visible_keypoints(instances)

        if self.keypoint_pooler is not None:
            features = [features[f] for f in self.keypoint_in_features]
            boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
            features = self.keypoint_pooler(features, boxes)
        else:
            features = {f: features[f] for f in self.keypoint_in_features}
        return self.keypoint_head(features, instances)

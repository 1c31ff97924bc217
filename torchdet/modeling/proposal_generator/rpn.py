"""Region Proposal Network (Faster R-CNN): ``StandardRPNHead`` and ``RPN``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchdet.config import configurable
from torchdet.layers import Conv2d, ShapeSpec, cat
from torchdet.structures import Boxes, ImageList, Instances, pairwise_iou
from torchdet.utils.registry import Registry

from ..anchor_generator import build_anchor_generator
from ..box_regression import Box2BoxTransform, _dense_box_regression_loss
from ..conv_fusion import conv_forward
from ..matcher import Matcher
from ..sampling import subsample_labels
from .build import PROPOSAL_GENERATOR_REGISTRY
from .proposal_utils import find_top_rpn_proposals

__all__ = ["RPN_HEAD_REGISTRY", "StandardRPNHead", "RPN", "build_rpn_head"]

RPN_HEAD_REGISTRY = Registry("RPN_HEAD")
RPN_HEAD_REGISTRY.__doc__ = """
Registry for RPN heads, which take feature maps and predict objectness logits and box deltas.

A registered object is called as ``obj(cfg, input_shape: list[ShapeSpec])``.
"""

# Shape shorthand: N images, L feature levels, A anchors per cell (equal on all levels),
# Hi x Wi the size of level i, R = sum_i Hi*Wi*A anchors, B box dim (4; 5 when rotated).
# Labels: 1 foreground, 0 background, -1 ignored.


def build_rpn_head(cfg, input_shape: list[ShapeSpec]) -> nn.Module:
    """Build the RPN head named by ``cfg.MODEL.RPN.HEAD_NAME``."""
    name = cfg.MODEL.RPN.HEAD_NAME
    return RPN_HEAD_REGISTRY.get(name)(cfg, input_shape)


def _put_scalars(**scalars: float) -> None:
    """Log training statistics to the current event storage, if there is one."""
    try:
        from torchdet.utils.events import get_event_storage
    except ImportError:  # an install without the training utilities: nothing to log to
        return
    try:
        storage = get_event_storage()
    except (AssertionError, RuntimeError):
        return  # outside an EventStorage context (e.g. a bare training step in a test)
    storage.put_scalars(**scalars)


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """The RPN head: shared 3x3 conv(s) with ReLU, then a 1x1 conv for the objectness logit
    and a 1x1 conv for the box deltas of each of the A anchors of every cell. The same head
    runs on every feature level.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        box_dim: int = 4,
        conv_dims: Sequence[int] = (-1,),
    ):
        """
        Args:
            in_channels: channels of the input features (the same on every level).
            num_anchors: anchors per cell (A).
            box_dim: box parameterization size (4, or 5 for rotated boxes).
            conv_dims: channels of the shared convs; -1 means ``in_channels``. One conv is
                named ``conv``; several are ``conv.conv0``, ``conv.conv1``...
        """
        super().__init__()
        cur_channels = in_channels
        if len(conv_dims) == 1:
            out_channels = cur_channels if conv_dims[0] == -1 else conv_dims[0]
            self.conv = self._get_rpn_conv(cur_channels, out_channels)
            cur_channels = out_channels
        else:
            self.conv = nn.Sequential()
            for k, conv_dim in enumerate(conv_dims):
                out_channels = cur_channels if conv_dim == -1 else conv_dim
                if out_channels <= 0:
                    raise ValueError(
                        f"Conv output channels should be greater than 0. Got {out_channels}"
                    )
                self.conv.add_module(f"conv{k}", self._get_rpn_conv(cur_channels, out_channels))
                cur_channels = out_channels
        self.objectness_logits = nn.Conv2d(cur_channels, num_anchors, kernel_size=1, stride=1)
        self.anchor_deltas = nn.Conv2d(cur_channels, num_anchors * box_dim, kernel_size=1, stride=1)

        # Small random weights so that the initial objectness is uninformative (p ~ 0.5).
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def _get_rpn_conv(self, in_channels: int, out_channels: int) -> Conv2d:
        return Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            activation=nn.ReLU(),
        )

    @classmethod
    def from_config(cls, cfg, input_shape: list[ShapeSpec]) -> dict:
        # One head runs on every level, so all levels need the same channels and anchors.
        in_channels = [s.channels for s in input_shape]
        if len(set(in_channels)) != 1:
            raise ValueError(f"Each level must have the same channel! Got {in_channels}")
        in_channels = in_channels[0]

        anchor_generator = build_anchor_generator(cfg, input_shape)
        num_anchors = anchor_generator.num_anchors
        box_dim = anchor_generator.box_dim
        if len(set(num_anchors)) != 1:
            raise ValueError(
                f"Each level must have the same number of anchors per spatial position, "
                f"got {num_anchors}"
            )
        return {
            "in_channels": in_channels,
            "num_anchors": num_anchors[0],
            "box_dim": box_dim,
            "conv_dims": cfg.MODEL.RPN.CONV_DIMS,
        }

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            features (list[Tensor[N, C, Hi, Wi]]): the feature maps.

        Returns:
            pred_objectness_logits (list[Tensor[N, A, Hi, Wi]]): per level.
            pred_anchor_deltas (list[Tensor[N, A * B, Hi, Wi]]): per level.
        """
        pred_objectness_logits = []
        pred_anchor_deltas = []
        convs = [self.conv] if isinstance(self.conv, Conv2d) else list(self.conv)
        for x in features:
            t = x
            for conv in convs:
                t = conv_forward(conv, t)
            pred_objectness_logits.append(conv_forward(self.objectness_logits, t))
            pred_anchor_deltas.append(conv_forward(self.anchor_deltas, t))
        return pred_objectness_logits, pred_anchor_deltas


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Region Proposal Network (Ren et al., 2015)."""

    @configurable
    def __init__(
        self,
        *,
        in_features: list[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher: Matcher,
        box2box_transform: Box2BoxTransform,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_topk: tuple[float, float],
        post_nms_topk: tuple[float, float],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        anchor_boundary_thresh: float = -1.0,
        loss_weight: float | dict[str, float] = 1.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
    ):
        """
        Args:
            in_features: names of the input feature maps.
            head: an RPN head (e.g. ``StandardRPNHead``) predicting logits and deltas.
            anchor_generator: makes the anchors of each feature map.
            anchor_matcher: labels anchors by their IoU with the ground truth.
            box2box_transform: encodes / decodes anchor-relative box deltas.
            batch_size_per_image: anchors sampled per image for training.
            positive_fraction: largest foreground share of the sampled anchors.
            pre_nms_topk: (train, test) proposals kept per level before NMS.
            post_nms_topk: (train, test) proposals kept per image after NMS.
            nms_thresh: IoU threshold of the proposal NMS.
            min_box_size: proposals smaller than this (in pixels) are dropped.
            anchor_boundary_thresh: anchors reaching beyond the image by more than this are
                ignored in training; negative to keep all.
            loss_weight: weight of both losses, or ``{"loss_rpn_cls": w1, "loss_rpn_loc": w2}``.
            box_reg_loss_type: "smooth_l1", "giou", "diou" or "ciou".
            smooth_l1_beta: beta of the smooth L1 loss (0 is L1).
        """
        super().__init__()
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        self.box2box_transform = box2box_transform
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        # Indexed by self.training.
        self.pre_nms_topk = {True: pre_nms_topk[0], False: pre_nms_topk[1]}
        self.post_nms_topk = {True: post_nms_topk[0], False: post_nms_topk[1]}
        self.nms_thresh = nms_thresh
        self.min_box_size = float(min_box_size)
        self.anchor_boundary_thresh = anchor_boundary_thresh
        if isinstance(loss_weight, int | float):
            loss_weight = {"loss_rpn_cls": loss_weight, "loss_rpn_loc": loss_weight}
        self.loss_weight = loss_weight
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        rcfg = cfg.MODEL.RPN
        in_features = rcfg.IN_FEATURES
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.RPN.IN_FEATURES {missing} are not backbone outputs "
                f"(the backbone has {list(input_shape)})"
            )
        ret = {
            "in_features": in_features,
            "min_box_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            "nms_thresh": rcfg.NMS_THRESH,
            "batch_size_per_image": rcfg.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": rcfg.POSITIVE_FRACTION,
            "loss_weight": {
                "loss_rpn_cls": rcfg.LOSS_WEIGHT,
                "loss_rpn_loc": rcfg.BBOX_REG_LOSS_WEIGHT * rcfg.LOSS_WEIGHT,
            },
            "anchor_boundary_thresh": rcfg.BOUNDARY_THRESH,
            "box2box_transform": Box2BoxTransform(weights=rcfg.BBOX_REG_WEIGHTS),
            "box_reg_loss_type": rcfg.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": rcfg.SMOOTH_L1_BETA,
        }
        ret["pre_nms_topk"] = (rcfg.PRE_NMS_TOPK_TRAIN, rcfg.PRE_NMS_TOPK_TEST)
        ret["post_nms_topk"] = (rcfg.POST_NMS_TOPK_TRAIN, rcfg.POST_NMS_TOPK_TEST)
        ret["anchor_generator"] = build_anchor_generator(cfg, [input_shape[f] for f in in_features])
        ret["anchor_matcher"] = Matcher(
            rcfg.IOU_THRESHOLDS, rcfg.IOU_LABELS, allow_low_quality_matches=True
        )
        ret["head"] = build_rpn_head(cfg, [input_shape[f] for f in in_features])
        return ret

    def _subsample_labels(self, label: torch.Tensor) -> torch.Tensor:
        """Keep a random balanced minibatch of the labels; set the others to -1 (in place).

        Args:
            label (Tensor[R]): 1 foreground, 0 background, -1 ignore.
        """
        pos_idx, neg_idx = subsample_labels(
            label, self.batch_size_per_image, self.positive_fraction, 0
        )
        label.fill_(-1)
        label.scatter_(0, pos_idx, 1)
        label.scatter_(0, neg_idx, 0)
        return label

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: list[Boxes], gt_instances: list[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Label every anchor of every image (1 / 0 / -1) and find its matched ground truth.

        Args:
            anchors (list[Boxes]): anchors of each level (the same for all images).
            gt_instances (list[Instances]): per image, with ``gt_boxes``.

        Returns:
            gt_labels (list[Tensor[R]]): per image, the sampled labels of all R anchors:
                1 foreground, 0 background, -1 ignored (not sampled, or in the ignore band).
            matched_gt_boxes (list[Tensor[R, 4]]): per image, the ground-truth box matched to
                each anchor (meaningful for foreground anchors only; zeros if no ground truth).
        """
        anchors = Boxes.cat(anchors)

        gt_boxes = [x.gt_boxes for x in gt_instances]
        image_sizes = [x.image_size for x in gt_instances]
        del gt_instances

        gt_labels = []
        matched_gt_boxes = []
        for image_size_i, gt_boxes_i in zip(image_sizes, gt_boxes):
            match_quality_matrix = pairwise_iou(gt_boxes_i, anchors)  # (M, R)
            matched_idxs, gt_labels_i = self.anchor_matcher(match_quality_matrix)
            gt_labels_i = gt_labels_i.to(device=gt_boxes_i.device)
            del match_quality_matrix

            if self.anchor_boundary_thresh >= 0:
                # Legacy option (off by default): ignore anchors crossing the image border.
                anchors_inside_image = anchors.inside_box(image_size_i, self.anchor_boundary_thresh)
                gt_labels_i[~anchors_inside_image] = -1

            gt_labels_i = self._subsample_labels(gt_labels_i)

            if len(gt_boxes_i) == 0:
                # Never read: with no ground truth every anchor is background.
                matched_gt_boxes_i = torch.zeros_like(anchors.tensor)
            else:
                matched_gt_boxes_i = gt_boxes_i[matched_idxs].tensor

            gt_labels.append(gt_labels_i)
            matched_gt_boxes.append(matched_gt_boxes_i)
        return gt_labels, matched_gt_boxes

    def losses(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        gt_boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The RPN losses, both normalised by ``batch_size_per_image * N``.

        Args:
            anchors (list[Boxes or RotatedBoxes]): anchors of each level, ``Hi*Wi*A`` each.
            pred_objectness_logits (list[Tensor[N, Hi*Wi*A]]): per level.
            gt_labels (list[Tensor[R]]): per image, from ``label_and_sample_anchors``.
            pred_anchor_deltas (list[Tensor[N, Hi*Wi*A, B]]): per level.
            gt_boxes (list[Tensor[R, B]]): per image, the matched ground-truth boxes.

        Returns:
            dict[str, Tensor]: ``loss_rpn_cls`` (binary cross-entropy over sampled anchors) and
            ``loss_rpn_loc`` (box regression over foreground anchors), weighted.
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, sum(Hi*Wi*Ai))

        pos_mask = gt_labels == 1
        if self.training:
            num_pos_anchors = pos_mask.sum().item()
            num_neg_anchors = (gt_labels == 0).sum().item()
            _put_scalars(
                **{
                    "rpn/num_pos_anchors": num_pos_anchors / num_images,
                    "rpn/num_neg_anchors": num_neg_anchors / num_images,
                }
            )

        localization_loss = _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )

        valid_mask = gt_labels >= 0
        objectness_loss = F.binary_cross_entropy_with_logits(
            cat(pred_objectness_logits, dim=1)[valid_mask],
            gt_labels[valid_mask].to(torch.float32),
            reduction="sum",
        )
        normalizer = self.batch_size_per_image * num_images
        losses = {
            "loss_rpn_cls": objectness_loss / normalizer,
            # Same normaliser as the classification loss (the paper's differs slightly).
            "loss_rpn_loc": localization_loss / normalizer,
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        gt_instances: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Args:
            images (ImageList): the input images, length N.
            features (dict[str, Tensor]): backbone outputs by name, ``(N, C, Hi, Wi)``.
            gt_instances (list[Instances], optional): per image, with ``gt_boxes``; required
                in training.

        Returns:
            proposals (list[Instances]): per image, ``proposal_boxes`` and
                ``objectness_logits``.
            losses (dict[str, Tensor]): the losses in training, else ``{}``.
        """
        missing = [f for f in self.in_features if f not in features]
        if missing:
            raise KeyError(f"RPN: features {missing} are missing; got {list(features)}")
        features = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(features)

        pred_objectness_logits, pred_anchor_deltas = self.rpn_head(features)
        # Flatten to anchor order (Hi, Wi, A), the anchor generator's order.
        pred_objectness_logits = [
            # (N, A, Hi, Wi) -> (N, Hi, Wi, A) -> (N, Hi*Wi*A)
            score.permute(0, 2, 3, 1).flatten(1)
            for score in pred_objectness_logits
        ]
        pred_anchor_deltas = [
            # (N, A*B, Hi, Wi) -> (N, A, B, Hi, Wi) -> (N, Hi, Wi, A, B) -> (N, Hi*Wi*A, B)
            x.view(x.shape[0], -1, self.anchor_generator.box_dim, x.shape[-2], x.shape[-1])
            .permute(0, 3, 4, 1, 2)
            .flatten(1, -2)
            for x in pred_anchor_deltas
        ]

        if self.training:
            if gt_instances is None:
                raise ValueError("RPN requires gt_instances in training!")
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(
                anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes
            )
        else:
            losses = {}
        proposals = self.predict_proposals(
            anchors, pred_objectness_logits, pred_anchor_deltas, images.image_sizes
        )
        return proposals, losses

    def predict_proposals(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[Instances]:
        """Decode the deltas and select the proposals of each image (no gradient).

        Returns:
            list[Instances]: per image, ``proposal_boxes`` and ``objectness_logits``.
        """
        # Proposals are constants for the second stage: no gradient through their coordinates.
        with torch.no_grad():
            pred_proposals = self._decode_proposals(anchors, pred_anchor_deltas)
            return find_top_rpn_proposals(
                pred_proposals,
                pred_objectness_logits,
                image_sizes,
                self.nms_thresh,
                self.pre_nms_topk[self.training],
                self.post_nms_topk[self.training],
                self.min_box_size,
                self.training,
            )

    def _decode_proposals(
        self, anchors: list[Boxes], pred_anchor_deltas: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Apply the predicted deltas to the anchors.

        Returns:
            list[Tensor[N, Hi*Wi*A, B]]: the proposal boxes of each level.
        """
        N = pred_anchor_deltas[0].shape[0]
        proposals = []
        for anchors_i, pred_anchor_deltas_i in zip(anchors, pred_anchor_deltas):
            B = anchors_i.tensor.size(1)
            pred_anchor_deltas_i = pred_anchor_deltas_i.reshape(-1, B)
            anchors_i = anchors_i.tensor.unsqueeze(0).expand(N, -1, -1).reshape(-1, B)
            proposals_i = self.box2box_transform.apply_deltas(pred_anchor_deltas_i, anchors_i)
            proposals.append(proposals_i.view(N, -1, B))
        return proposals

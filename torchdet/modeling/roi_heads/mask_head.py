"""Mask heads (Mask R-CNN): per-RoI mask logits, their loss and their inference.

Shape shorthand: M regions over the batch, C channels, K classes (1 when class-agnostic),
Hm x Wm the predicted mask size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import Conv2d, ConvTranspose2d, ShapeSpec, cat, get_norm
from torchdet.structures import Instances
from torchdet.utils.registry import Registry

from ..weight_init import c2_msra_fill
from .events import put_scalars

__all__ = [
    "BaseMaskRCNNHead",
    "MaskRCNNConvUpsampleHead",
    "build_mask_head",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "ROI_MASK_HEAD_REGISTRY",
]

ROI_MASK_HEAD_REGISTRY = Registry("ROI_MASK_HEAD")
ROI_MASK_HEAD_REGISTRY.__doc__ = """
Registry for mask heads, which predict instance masks from pooled RoI features.

A registered object is called as ``obj(cfg, input_shape: ShapeSpec)``.
"""


def mask_rcnn_loss(
    pred_mask_logits: torch.Tensor, instances: list[Instances], vis_period: int = 0
) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy between the predicted masks of each region's
    ground-truth class and its ground-truth mask cropped and resized to the region.

    Args:
        pred_mask_logits (Tensor[M, K, Hm, Wm]): mask logits (K = 1 when class-agnostic).
        instances (list[Instances]): per image, the foreground regions, in the order of
            ``pred_mask_logits``, with ``proposal_boxes``, ``gt_classes`` and ``gt_masks``
            (``PolygonMasks`` or ``BitMasks``).
        vis_period (int): unused (visualisation of the masks is not drawn).

    Returns:
        Tensor[]: the loss; a differentiable zero when there is no region.
    """
    cls_agnostic_mask = pred_mask_logits.size(1) == 1
    total_num_masks = pred_mask_logits.size(0)
    mask_side_len = pred_mask_logits.size(2)
    if pred_mask_logits.size(2) != pred_mask_logits.size(3):
        raise ValueError(
            f"mask_rcnn_loss: masks must be square, got {tuple(pred_mask_logits.shape[2:])}"
        )

    gt_classes = []
    gt_masks = []
    for instances_per_image in instances:
        if len(instances_per_image) == 0:
            continue
        if not cls_agnostic_mask:
            gt_classes.append(instances_per_image.gt_classes.to(dtype=torch.int64))
        gt_masks_per_image = instances_per_image.gt_masks.crop_and_resize(
            instances_per_image.proposal_boxes.tensor, mask_side_len
        ).to(device=pred_mask_logits.device)
        # (R, Hm, Wm) targets in [0, 1] (bool for polygons / bit masks)
        gt_masks.append(gt_masks_per_image)

    if len(gt_masks) == 0:
        return pred_mask_logits.sum() * 0

    gt_masks = cat(gt_masks, dim=0)
    if gt_masks.shape[0] != total_num_masks:
        raise ValueError(
            f"mask_rcnn_loss: {total_num_masks} predicted masks for {gt_masks.shape[0]} regions"
        )

    if cls_agnostic_mask:
        pred_mask_logits = pred_mask_logits[:, 0]
    else:
        indices = torch.arange(total_num_masks, device=pred_mask_logits.device)
        gt_classes = cat(gt_classes, dim=0)
        pred_mask_logits = pred_mask_logits[indices, gt_classes]

    if gt_masks.dtype == torch.bool:
        gt_masks_bool = gt_masks
    else:
        # Soft targets (e.g. from bilinear resizing): threshold at 0.5 for the statistics.
        gt_masks_bool = gt_masks > 0.5
    gt_masks = gt_masks.to(dtype=torch.float32)

    with torch.no_grad():
        mask_incorrect = (pred_mask_logits > 0.0) != gt_masks_bool
        mask_accuracy = 1 - (mask_incorrect.sum().item() / max(mask_incorrect.numel(), 1.0))
        num_positive = gt_masks_bool.sum().item()
        false_positive = (mask_incorrect & ~gt_masks_bool).sum().item() / max(
            gt_masks_bool.numel() - num_positive, 1.0
        )
        false_negative = (mask_incorrect & gt_masks_bool).sum().item() / max(num_positive, 1.0)
    put_scalars(
        **{
            "mask_rcnn/accuracy": mask_accuracy,
            "mask_rcnn/false_positive": false_positive,
            "mask_rcnn/false_negative": false_negative,
        }
    )
    return F.binary_cross_entropy_with_logits(pred_mask_logits, gt_masks, reduction="mean")


def mask_rcnn_inference(pred_mask_logits: torch.Tensor, pred_instances: list[Instances]) -> None:
    """Set ``pred_masks`` of each instance: the sigmoid of its predicted class's mask.

    Args:
        pred_mask_logits (Tensor[M, K, Hm, Wm]): mask logits (K = 1 when class-agnostic).
        pred_instances (list[Instances]): per image, the detections, in the order of
            ``pred_mask_logits``, with ``pred_classes``. Modified in place: ``pred_masks``
            (Tensor[Ri, 1, Hm, Wm]) probabilities in [0, 1].
    """
    cls_agnostic_mask = pred_mask_logits.size(1) == 1
    if cls_agnostic_mask:
        mask_probs_pred = pred_mask_logits.sigmoid()
    else:
        num_masks = pred_mask_logits.shape[0]
        class_pred = cat([i.pred_classes for i in pred_instances])
        indices = torch.arange(num_masks, device=class_pred.device)
        # Only the predicted class's mask is needed: index before the sigmoid.
        mask_probs_pred = pred_mask_logits[indices, class_pred][:, None].sigmoid()

    if len(pred_instances) == 1:  # no split: a traced graph keeps the count dynamic
        pred_instances[0].pred_masks = mask_probs_pred
        return
    num_boxes_per_image = [len(i) for i in pred_instances]
    mask_probs_pred = mask_probs_pred.split(num_boxes_per_image, dim=0)
    for prob, instances in zip(mask_probs_pred, pred_instances):
        instances.pred_masks = prob  # (Ri, 1, Hm, Wm)


class BaseMaskRCNNHead(nn.Module):
    """A mask head: ``layers`` (to implement) gives mask logits; ``forward`` adds the loss
    in training and ``pred_masks`` at inference."""

    @configurable
    def __init__(self, *, loss_weight: float = 1.0, vis_period: int = 0):
        """
        Args:
            loss_weight: weight of ``loss_mask``.
            vis_period: visualise masks every this many iterations (0: never).
        """
        super().__init__()
        self.vis_period = vis_period
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape) -> dict:
        return {"vis_period": cfg.VIS_PERIOD}

    def forward(self, x, instances: list[Instances]):
        """
        Args:
            x: the pooled features of the regions (Tensor[M, C, H, W]), or a dict of feature
                maps for heads that pool themselves.
            instances (list[Instances]): in training, the foreground proposals with ground
                truth; at inference, the detections with ``pred_classes``.

        Returns:
            In training, ``{"loss_mask": Tensor}``; at inference, ``instances`` with
            ``pred_masks`` set.
        """
        x = self.layers(x)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(x, instances, self.vis_period) * self.loss_weight}
        mask_rcnn_inference(x, instances)
        return instances

    def layers(self, x):
        """The mask logits (Tensor[M, K, Hm, Wm]) of the input features."""
        raise NotImplementedError


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHead(BaseMaskRCNNHead, nn.Sequential):
    """3x3 convs (``mask_fcn1``...), a 2x transposed conv (``deconv``) and a 1x1 conv
    (``predictor``) giving one mask per class (or one class-agnostic mask)."""

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: Sequence[int],
        conv_norm: str = "",
        **kwargs,
    ):
        """
        Args:
            input_shape (ShapeSpec): the pooled features.
            num_classes: masks predicted per region (1 for class-agnostic masks).
            conv_dims: output channels of each conv; the last is the deconv's.
            conv_norm: normalization after each conv ("" for none).
            kwargs: passed to ``BaseMaskRCNNHead`` (``loss_weight``, ``vis_period``).
        """
        super().__init__(**kwargs)
        if len(conv_dims) < 1:
            raise ValueError("MaskRCNNConvUpsampleHead: conv_dims must have at least 1 entry")

        self.conv_norm_relus = []
        cur_channels = input_shape.channels
        for k, conv_dim in enumerate(conv_dims[:-1]):
            conv = Conv2d(
                cur_channels,
                conv_dim,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, conv_dim),
                activation=nn.ReLU(),
            )
            self.add_module(f"mask_fcn{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            cur_channels = conv_dim

        self.deconv = ConvTranspose2d(
            cur_channels, conv_dims[-1], kernel_size=2, stride=2, padding=0
        )
        self.add_module("deconv_relu", nn.ReLU())
        cur_channels = conv_dims[-1]

        self.predictor = Conv2d(cur_channels, num_classes, kernel_size=1, stride=1, padding=0)

        for layer in [*self.conv_norm_relus, self.deconv]:
            c2_msra_fill(layer)
        # Small initial mask logits.
        nn.init.normal_(self.predictor.weight, std=0.001)
        if self.predictor.bias is not None:
            nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        ret = super().from_config(cfg, input_shape)
        conv_dim = cfg.MODEL.ROI_MASK_HEAD.CONV_DIM
        num_conv = cfg.MODEL.ROI_MASK_HEAD.NUM_CONV
        ret.update(
            conv_dims=[conv_dim] * (num_conv + 1),  # +1 for the deconv
            conv_norm=cfg.MODEL.ROI_MASK_HEAD.NORM,
            input_shape=input_shape,
        )
        if cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK:
            ret["num_classes"] = 1
        else:
            ret["num_classes"] = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        return ret

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


def build_mask_head(cfg, input_shape) -> nn.Module:
    """Build the mask head named by ``cfg.MODEL.ROI_MASK_HEAD.NAME``."""
    name = cfg.MODEL.ROI_MASK_HEAD.NAME
    return ROI_MASK_HEAD_REGISTRY.get(name)(cfg, input_shape)

"""Point heads: small MLPs predicting mask logits at points from fine-grained and coarse
features, and the point loss.

Shape shorthand: R regions, P points, C fine-grained channels, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import ShapeSpec, cat
from torchdet.modeling.weight_init import c2_msra_fill
from torchdet.structures import Instances
from torchdet.utils.events import get_event_storage
from torchdet.utils.registry import Registry

__all__ = [
    "POINT_HEAD_REGISTRY",
    "StandardPointHead",
    "build_point_head",
    "roi_mask_point_loss",
]

POINT_HEAD_REGISTRY = Registry("POINT_HEAD")
POINT_HEAD_REGISTRY.__doc__ = """
Registry for point heads, which predict logits at points from per-point features.

A registered object is called as ``obj(cfg, input_shape: ShapeSpec)``.
"""


def roi_mask_point_loss(
    mask_logits: torch.Tensor, instances: Sequence[Instances], point_labels: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy of the ground-truth class's point logits against point labels.

    Args:
        mask_logits (Tensor[R, K, P]): point logits (K = 1 when class-agnostic).
        instances: per image, the R regions (with ``gt_classes``), in order.
        point_labels (Tensor[R, P]): targets in [0, 1]; -1 marks ignored points.

    Returns:
        Tensor[]: mean loss over non-ignored points; a differentiable zero with no region.
    """
    with torch.no_grad():
        cls_agnostic_mask = mask_logits.size(1) == 1
        total_num_masks = mask_logits.size(0)
        gt_classes = [x.gt_classes.to(dtype=torch.int64) for x in instances if len(x) > 0]
    if point_labels.numel() == 0:
        return mask_logits.sum() * 0
    if point_labels.shape != (mask_logits.shape[0], mask_logits.shape[2]):
        raise ValueError(
            f"roi_mask_point_loss: point_labels {tuple(point_labels.shape)} do not match "
            f"mask_logits {tuple(mask_logits.shape)}"
        )
    if cls_agnostic_mask:
        mask_logits = mask_logits[:, 0]
    else:
        indices = torch.arange(total_num_masks, device=mask_logits.device)
        mask_logits = mask_logits[indices, cat(gt_classes, dim=0)]

    point_ignores = point_labels == -1
    # Training accuracy at a 0 logit threshold, over the points that count.
    accurate = ((mask_logits > 0.0) == (point_labels > 0.5))[~point_ignores]
    try:
        storage = get_event_storage()
    except (AssertionError, RuntimeError):
        storage = None
    if storage is not None:
        storage.put_scalar("point/accuracy", accurate.sum().item() / max(accurate.numel(), 1.0))
    return F.binary_cross_entropy_with_logits(
        mask_logits,
        point_labels.to(dtype=torch.float32),
        weight=(~point_ignores).to(mask_logits.dtype),
        reduction="mean",
    )


@POINT_HEAD_REGISTRY.register()
class StandardPointHead(nn.Module):
    """A point-wise MLP (1x1 ``Conv1d`` layers) over ``[fine-grained, coarse]`` features; the
    coarse prediction is optionally concatenated again before every layer.

    Parameters: ``fc1`` ... ``fc<num_fc>``, ``predictor``.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        fc_dim: int,
        num_fc: int,
        cls_agnostic_mask: bool,
        coarse_pred_each_layer: bool,
    ):
        """
        Args:
            input_shape: ``channels`` = C of the fine-grained features.
            num_classes: K, channels of the coarse features.
            fc_dim: width of the MLP.
            num_fc: number of hidden layers.
            cls_agnostic_mask: predict one mask instead of K.
            coarse_pred_each_layer: concatenate the coarse features before every layer.
        """
        super().__init__()
        self.coarse_pred_each_layer = coarse_pred_each_layer
        fc_dim_in = input_shape.channels + num_classes
        self.fc_layers = []
        for k in range(num_fc):
            fc = nn.Conv1d(fc_dim_in, fc_dim, kernel_size=1, stride=1, padding=0, bias=True)
            self.add_module(f"fc{k + 1}", fc)
            self.fc_layers.append(fc)
            fc_dim_in = fc_dim + (num_classes if coarse_pred_each_layer else 0)
        num_mask_classes = 1 if cls_agnostic_mask else num_classes
        self.predictor = nn.Conv1d(fc_dim_in, num_mask_classes, kernel_size=1, stride=1, padding=0)
        for layer in self.fc_layers:
            c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.POINT_HEAD.NUM_CLASSES,
            "fc_dim": cfg.MODEL.POINT_HEAD.FC_DIM,
            "num_fc": cfg.MODEL.POINT_HEAD.NUM_FC,
            "cls_agnostic_mask": cfg.MODEL.POINT_HEAD.CLS_AGNOSTIC_MASK,
            "coarse_pred_each_layer": cfg.MODEL.POINT_HEAD.COARSE_PRED_EACH_LAYER,
        }

    def forward(
        self, fine_grained_features: torch.Tensor, coarse_features: torch.Tensor
    ) -> torch.Tensor:
        """Args:
            fine_grained_features (Tensor[R, C, P]); coarse_features (Tensor[R, K, P]).

        Returns:
            Tensor[R, K (or 1), P] point logits.
        """
        x = torch.cat((fine_grained_features, coarse_features), dim=1)
        for layer in self.fc_layers:
            x = F.relu(layer(x))
            if self.coarse_pred_each_layer:
                x = cat((x, coarse_features), dim=1)
        return self.predictor(x)


def build_point_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build the point head named by ``cfg.MODEL.POINT_HEAD.NAME``."""
    return POINT_HEAD_REGISTRY.get(cfg.MODEL.POINT_HEAD.NAME)(cfg, input_shape)

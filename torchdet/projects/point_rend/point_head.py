"""Point heads: small MLPs predicting mask logits at points from fine-grained and coarse
features, and the point loss.

Shape shorthand: R regions, P points, C fine-grained channels, K classes.
"""

from __future__ import annotations

import math
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
    "ImplicitPointHead",
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


@POINT_HEAD_REGISTRY.register()
class ImplicitPointHead(nn.Module):
    """Implicit PointRend's point head: an MLP whose weights are predicted per region (by the
    mask head's parameter head) and applied to ``[positional encoding, fine-grained]`` point
    features.

    Has no learned parameters; ``num_params`` is the size of the per-region parameter vector
    (all layer weights, then all biases). The positional encoding uses a fixed random Gaussian
    matrix (buffer ``positional_encoding_gaussian_matrix``, (2, 128)).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        channels: int,
        num_layers: int,
        image_feature_enabled: bool = True,
        positional_encoding_enabled: bool = True,
    ):
        """
        Args:
            input_shape: ``channels`` = C of the fine-grained features.
            num_classes: K outputs per point (1 when class-agnostic).
            channels: width of the hidden layers.
            num_layers: number of layers (hidden + output), at least 2.
            image_feature_enabled: use the fine-grained features.
            positional_encoding_enabled: use the 256-channel Fourier encoding of the point.
        """
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"ImplicitPointHead: num_layers must be >= 2, got {num_layers}")
        self.num_layers = num_layers
        self.channels = channels
        self.num_classes = num_classes
        self.image_feature_enabled = image_feature_enabled
        self.positional_encoding_enabled = positional_encoding_enabled
        self.in_channels = input_shape.channels if image_feature_enabled else 0
        if positional_encoding_enabled:
            self.in_channels += 256
            self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, 128)))
        if self.in_channels <= 0:
            raise ValueError(
                "ImplicitPointHead: enable image features or the positional encoding (or both)"
            )
        widths = [self.in_channels] + [channels] * (num_layers - 1) + [num_classes]
        # Layer l maps widths[l] -> widths[l + 1].
        self.num_weight_params = [widths[i] * widths[i + 1] for i in range(num_layers)]
        self.num_bias_params = [widths[i + 1] for i in range(num_layers)]
        self._widths = widths
        self.num_params = sum(self.num_weight_params) + sum(self.num_bias_params)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        agnostic = cfg.MODEL.POINT_HEAD.CLS_AGNOSTIC_MASK
        return {
            "input_shape": input_shape,
            "num_classes": 1 if agnostic else cfg.MODEL.POINT_HEAD.NUM_CLASSES,
            "channels": cfg.MODEL.POINT_HEAD.FC_DIM,
            "num_layers": cfg.MODEL.POINT_HEAD.NUM_FC + 1,
            "image_feature_enabled": cfg.MODEL.IMPLICIT_POINTREND.IMAGE_FEATURE_ENABLED,
            "positional_encoding_enabled": cfg.MODEL.IMPLICIT_POINTREND.POS_ENC_ENABLED,
        }

    def forward(
        self,
        fine_grained_features: torch.Tensor,
        point_coords: torch.Tensor,
        parameters: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            fine_grained_features (Tensor[R, C, P]); point_coords (Tensor[R, P, 2]) normalized
            in each box; parameters (Tensor[R, num_params]).

        Returns:
            Tensor[R, K, P] point logits.
        """
        num_instances, _, num_points = fine_grained_features.shape
        if num_instances == 0:
            return fine_grained_features.new_zeros((0, self.num_classes, num_points))
        if parameters.shape != (num_instances, self.num_params):
            raise ValueError(
                f"ImplicitPointHead: parameters must be ({num_instances}, {self.num_params}), "
                f"got {tuple(parameters.shape)}"
            )
        if self.positional_encoding_enabled:
            locations = 2 * point_coords.reshape(num_instances * num_points, 2) - 1
            locations = 2 * math.pi * (locations @ self.positional_encoding_gaussian_matrix)
            locations = torch.cat([torch.sin(locations), torch.cos(locations)], dim=1)
            locations = locations.reshape(num_instances, num_points, 256).permute(0, 2, 1)
            if self.image_feature_enabled:
                fine_grained_features = torch.cat([locations, fine_grained_features], dim=1)
            else:
                fine_grained_features = locations
        x = fine_grained_features.reshape(num_instances, self.in_channels, num_points)
        weights, biases = self._parse_params(parameters)
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.einsum("nck,ndc->ndk", x, w) + b
            if i < len(weights) - 1:
                x = F.relu(x)
        return x

    def _parse_params(self, parameters: torch.Tensor):
        """Split (R, num_params) into per-layer weights (R, out, in) and biases (R, out, 1)."""
        n = parameters.shape[0]
        splits = torch.split(parameters, self.num_weight_params + self.num_bias_params, dim=1)
        weights = [
            splits[i].reshape(n, self._widths[i + 1], self._widths[i])
            for i in range(self.num_layers)
        ]
        biases = [
            splits[self.num_layers + i].reshape(n, self._widths[i + 1], 1)
            for i in range(self.num_layers)
        ]
        return weights, biases


def build_point_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build the point head named by ``cfg.MODEL.POINT_HEAD.NAME``."""
    return POINT_HEAD_REGISTRY.get(cfg.MODEL.POINT_HEAD.NAME)(cfg, input_shape)

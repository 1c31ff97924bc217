"""Feature Pyramid Network (Lin et al., 2017) on top of a bottom-up backbone.

Module names follow Detectron2: ``bottom_up``, ``fpn_lateral{stage}``, ``fpn_output{stage}``,
``top_block.p6``/``p7``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchdet.layers import Conv2d, ShapeSpec, get_norm

from ..conv_fusion import conv_forward
from ..weight_init import c2_xavier_fill
from .backbone import Backbone
from .build import BACKBONE_REGISTRY
from .resnet import build_resnet_backbone

__all__ = [
    "FPN",
    "LastLevelMaxPool",
    "LastLevelP6P7",
    "build_resnet_fpn_backbone",
    "build_retinanet_resnet_fpn_backbone",
]


def _assert_strides_are_log2_contiguous(strides: Sequence[int]) -> None:
    """FPN needs each input to have twice the stride of the previous one."""
    for i, stride in enumerate(strides[1:], 1):
        if stride != 2 * strides[i - 1]:
            raise ValueError(
                f"FPN: strides of in_features must double from level to level, got {list(strides)}"
            )


class FPN(Backbone):
    """A backbone adding a feature pyramid (``p2``..``p6``...) to a bottom-up backbone.

    Args:
        bottom_up (Backbone): the bottom-up network, e.g. a ResNet.
        in_features (list[str]): bottom-up outputs to use, of strictly doubling strides, e.g.
            ``["res2", "res3", "res4", "res5"]``. Output ``p{k}`` has stride ``2 ** k``.
        out_channels (int): channels of every pyramid level.
        norm (str or callable): normalisation of the lateral and output convs ("" for none;
            the convs have a bias only without a norm).
        top_block (nn.Module, optional): extra levels above the last one; it has
            ``num_levels``, ``in_feature`` (a bottom-up output or a pyramid level) and returns
            a list of ``num_levels`` tensors.
        fuse_type (str): "sum" or "avg", how the lateral and top-down features merge.
        square_pad (int): if > 0, inputs are padded to this square size.
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int,
        norm="",
        top_block: nn.Module | None = None,
        fuse_type: str = "sum",
        square_pad: int = 0,
    ):
        super().__init__()
        if not isinstance(bottom_up, Backbone):
            raise TypeError(f"FPN: bottom_up must be a Backbone, got {type(bottom_up).__name__}")
        if fuse_type not in ("avg", "sum"):
            raise ValueError(f"FPN: fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        if not in_features:
            raise ValueError("FPN: in_features is empty")
        input_shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in input_shapes]
        if missing:
            raise KeyError(
                f"FPN: in_features {missing} are not outputs of the bottom-up backbone "
                f"(it has {list(input_shapes)})"
            )
        strides = [input_shapes[f].stride for f in in_features]
        in_channels_per_feature = [input_shapes[f].channels for f in in_features]
        _assert_strides_are_log2_contiguous(strides)

        lateral_convs = []
        output_convs = []
        use_bias = norm == ""
        for idx, in_channels in enumerate(in_channels_per_feature):
            lateral_conv = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            output_conv = Conv2d(
                out_channels,
                out_channels,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            c2_xavier_fill(lateral_conv)
            c2_xavier_fill(output_conv)
            stage = int(math.log2(strides[idx]))
            self.add_module(f"fpn_lateral{stage}", lateral_conv)
            self.add_module(f"fpn_output{stage}", output_conv)
            lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # Plain lists (the modules are registered above under their Detectron2 names), ordered
        # from the top (coarsest) level down.
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]
        self.top_block = top_block
        self.in_features = tuple(in_features)
        self.bottom_up = bottom_up

        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        if self.top_block is not None:
            for s in range(stage, stage + self.top_block.num_levels):
                self._out_feature_strides[f"p{s + 1}"] = 2 ** (s + 1)
        self._out_features = list(self._out_feature_strides.keys())
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        self._size_divisibility = strides[-1]
        self._square_pad = square_pad
        self._fuse_type = fuse_type

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> dict[str, int]:
        return {"square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, C, H, W]): the input batch; H and W multiples of ``size_divisibility``.

        Returns:
            dict[str, Tensor]: ``{"p2": ..., ...}``, each ``(N, out_channels, H / s, W / s)``.
        """
        bottom_up_features = self.bottom_up(x)
        results = []
        prev_features = conv_forward(
            self.lateral_convs[0], bottom_up_features[self.in_features[-1]]
        )
        results.append(conv_forward(self.output_convs[0], prev_features))
        for idx in range(1, len(self.lateral_convs)):
            features = bottom_up_features[self.in_features[-idx - 1]]
            top_down_features = F.interpolate(prev_features, scale_factor=2.0, mode="nearest")
            prev_features = conv_forward(self.lateral_convs[idx], features)
            prev_features += top_down_features
            if self._fuse_type == "avg":
                prev_features /= 2
            results.insert(0, conv_forward(self.output_convs[idx], prev_features))

        if self.top_block is not None:
            if self.top_block.in_feature in bottom_up_features:
                top_block_in_feature = bottom_up_features[self.top_block.in_feature]
            else:
                top_block_in_feature = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_block_in_feature))
        return dict(zip(self._out_features, results))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


class LastLevelMaxPool(nn.Module):
    """P6 from P5 by a 1x1 max pool of stride 2 (the extra level of the RPN in FPN models)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_levels = 1
        self.in_feature = "p5"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class LastLevelP6P7(nn.Module):
    """P6 and P7 of RetinaNet: a stride-2 3x3 conv on ``in_feature``, then ReLU and another.

    Args:
        in_channels: channels of ``in_feature``.
        out_channels: channels of P6 and P7.
        in_feature: "res5" (C5, as RetinaNet) or "p5".
    """

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "res5"):
        super().__init__()
        self.num_levels = 2
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in [self.p6, self.p7]:
            c2_xavier_fill(module)

    def forward(self, c5: torch.Tensor) -> list[torch.Tensor]:
        p6 = conv_forward(self.p6, c5)
        p7 = conv_forward(self.p7, F.relu(p6))
        return [p6, p7]


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet + FPN with a max-pooled P6 (``MODEL.FPN.*``), as in Faster/Mask R-CNN FPN."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet + FPN with P6/P7 computed from C5, as in RetinaNet."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    in_channels_p6p7 = bottom_up.output_shape()["res5"].channels
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(in_channels_p6p7, out_channels),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )

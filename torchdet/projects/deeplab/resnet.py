"""The DeepLab ResNet: a three-conv stem and dilated res4/res5 with a multi-grid res5."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from torchdet.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from torchdet.modeling.backbone import (
    BACKBONE_REGISTRY,
    BasicStem,
    BottleneckBlock,
    DeformBottleneckBlock,
    ResNet,
)
from torchdet.modeling.conv_fusion import conv_forward
from torchdet.modeling.weight_init import c2_msra_fill

__all__ = ["DeepLabStem", "build_resnet_deeplab_backbone"]

_NUM_BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
_STAGE_OF = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}


class DeepLabStem(CNNBlockBase):
    """Three 3x3 convs (the first of stride 2; ``out_channels // 2``, ``out_channels // 2``,
    ``out_channels``), each with ReLU, then a 3x3 stride-2 max pool: stride 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = 128, norm="BN") -> None:
        super().__init__(in_channels, out_channels, 4)
        self.in_channels = in_channels
        half = out_channels // 2
        self.conv1 = Conv2d(
            in_channels, half, 3, stride=2, padding=1, bias=False, norm=get_norm(norm, half)
        )
        self.conv2 = Conv2d(half, half, 3, padding=1, bias=False, norm=get_norm(norm, half))
        self.conv3 = Conv2d(
            half, out_channels, 3, padding=1, bias=False, norm=get_norm(norm, out_channels)
        )
        for layer in (self.conv1, self.conv2, self.conv3):
            c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor[N, C, H, W]). Returns: Tensor[N, out_channels, H/4, W/4]."""
        x = F.relu_(conv_forward(self.conv1, x))
        x = F.relu_(conv_forward(self.conv2, x))
        x = F.relu_(conv_forward(self.conv3, x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


@BACKBONE_REGISTRY.register()
def build_resnet_deeplab_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """A ResNet for DeepLab from ``cfg.MODEL.RESNETS``: ``STEM_TYPE`` ("basic" or "deeplab"),
    ``RES4_DILATION`` (1 or 2), ``RES5_DILATION`` (1, 2 or 4; 4 when res4 is dilated) and
    ``RES5_MULTI_GRID`` (per-block multipliers of the res5 dilation). Only the stages up to
    the last of ``OUT_FEATURES`` are built.
    """
    rcfg = cfg.MODEL.RESNETS
    norm = rcfg.NORM
    if rcfg.STEM_TYPE == "basic":
        stem: CNNBlockBase = BasicStem(input_shape.channels, rcfg.STEM_OUT_CHANNELS, norm=norm)
    elif rcfg.STEM_TYPE == "deeplab":
        stem = DeepLabStem(input_shape.channels, rcfg.STEM_OUT_CHANNELS, norm=norm)
    else:
        raise ValueError(
            f"MODEL.RESNETS.STEM_TYPE must be 'basic' or 'deeplab', got {rcfg.STEM_TYPE!r}"
        )
    out_features = list(rcfg.OUT_FEATURES)
    unknown = [f for f in out_features if f not in _STAGE_OF]
    if not out_features or unknown:
        raise ValueError(
            f"MODEL.RESNETS.OUT_FEATURES must name stages among {list(_STAGE_OF)}, "
            f"got {out_features}"
        )
    if rcfg.DEPTH not in _NUM_BLOCKS:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {list(_NUM_BLOCKS)}: {rcfg.DEPTH}")
    res4_dilation, res5_dilation = rcfg.RES4_DILATION, rcfg.RES5_DILATION
    if res4_dilation not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES4_DILATION must be 1 or 2, got {res4_dilation}")
    if res5_dilation not in (1, 2, 4):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION must be 1, 2 or 4, got {res5_dilation}")
    if res4_dilation == 2 and res5_dilation != 4:
        raise ValueError("MODEL.RESNETS.RES5_DILATION must be 4 when RES4_DILATION is 2")
    num_blocks = _NUM_BLOCKS[rcfg.DEPTH]
    multi_grid = list(rcfg.RES5_MULTI_GRID)
    if len(multi_grid) != num_blocks[3]:
        raise ValueError(
            f"MODEL.RESNETS.RES5_MULTI_GRID needs {num_blocks[3]} values, got {multi_grid}"
        )

    bottleneck_channels = rcfg.NUM_GROUPS * rcfg.WIDTH_PER_GROUP
    in_channels, out_channels = rcfg.STEM_OUT_CHANNELS, rcfg.RES2_OUT_CHANNELS
    max_stage = max(_STAGE_OF[f] for f in out_features)
    stages = []
    for idx, stage_idx in enumerate(range(2, max_stage + 1)):
        dilation = {4: res4_dilation, 5: res5_dilation}.get(stage_idx, 1)
        # A dilated stage keeps the resolution of the previous one.
        first_stride = 1 if idx == 0 or dilation > 1 else 2
        kwargs: dict[str, Any] = {
            "num_blocks": num_blocks[idx],
            "stride_per_block": [first_stride] + [1] * (num_blocks[idx] - 1),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": norm,
            "bottleneck_channels": bottleneck_channels,
            "stride_in_1x1": rcfg.STRIDE_IN_1X1,
            "num_groups": rcfg.NUM_GROUPS,
        }
        if rcfg.DEFORM_ON_PER_STAGE[idx]:
            kwargs["block_class"] = DeformBottleneckBlock
            kwargs["deform_modulated"] = rcfg.DEFORM_MODULATED
            kwargs["deform_num_groups"] = rcfg.DEFORM_NUM_GROUPS
        else:
            kwargs["block_class"] = BottleneckBlock
        if stage_idx == 5:
            kwargs["dilation_per_block"] = [dilation * mg for mg in multi_grid]
        else:
            kwargs["dilation"] = dilation
        stages.append(ResNet.make_stage(**kwargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)

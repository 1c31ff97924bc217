"""ResNet and ResNeXt backbones (Detectron2's ``modeling/backbone/resnet.py``).

Module names follow Detectron2 so its checkpoints load unchanged: ``stem.conv1``,
``res2.0.conv1``, ``res2.0.conv1.norm``, ``res2.0.shortcut``...

On CPU the network runs in channels-last layout, and a ``FrozenBatchNorm2d`` after a conv is
folded into it (``conv_fusion.conv_forward``): the same function, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchdet.layers import (
    CNNBlockBase,
    Conv2d,
    DeformConv,
    ModulatedDeformConv,
    ShapeSpec,
    get_norm,
)

from ..conv_fusion import conv_forward
from ..weight_init import c2_msra_fill
from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = [
    "ResNetBlockBase",
    "BasicBlock",
    "BottleneckBlock",
    "DeformBottleneckBlock",
    "BasicStem",
    "ResNet",
    "make_stage",
    "build_resnet_backbone",
]

ResNetBlockBase = CNNBlockBase  # the old name, kept for compatibility

_NUM_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


class BasicBlock(CNNBlockBase):
    """The two 3x3 conv residual block of ResNet-18 and ResNet-34."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm="BN"):
        """
        Args:
            in_channels, out_channels: channels of the input and output.
            stride: stride of the first conv (and of the projection shortcut).
            norm (str or callable): normalisation of every conv, see ``torchdet.layers.get_norm``.
        """
        super().__init__(in_channels, out_channels, stride)
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
        else:
            self.shortcut = None
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        self.conv2 = Conv2d(
            out_channels,
            out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in [self.conv1, self.conv2, self.shortcut]:
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(conv_forward(self.conv1, x))
        out = conv_forward(self.conv2, out)
        shortcut = x if self.shortcut is None else conv_forward(self.shortcut, x)
        out += shortcut
        return F.relu_(out)


class BottleneckBlock(CNNBlockBase):
    """The 1x1 - 3x3 - 1x1 bottleneck residual block of ResNet-50 and deeper (and ResNeXt)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm="BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
    ):
        """
        Args:
            bottleneck_channels: channels of the 3x3 conv.
            stride: stride of the block, applied in the 1x1 conv if ``stride_in_1x1`` (MSRA
                ResNet) else in the 3x3 conv (torchvision / FB ResNet).
            num_groups: groups of the 3x3 conv (ResNeXt).
            norm (str or callable): normalisation of every conv.
            dilation: dilation of the 3x3 conv (2 in the res5 of DC5 models).
        """
        super().__init__(in_channels, out_channels, stride)
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
        else:
            self.shortcut = None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels,
            bottleneck_channels,
            kernel_size=1,
            stride=stride_1x1,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv2 = Conv2d(
            bottleneck_channels,
            bottleneck_channels,
            kernel_size=3,
            stride=stride_3x3,
            padding=1 * dilation,
            bias=False,
            groups=num_groups,
            dilation=dilation,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv3 = Conv2d(
            bottleneck_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(conv_forward(self.conv1, x))
        out = F.relu_(conv_forward(self.conv2, out))
        out = conv_forward(self.conv3, out)
        shortcut = x if self.shortcut is None else conv_forward(self.shortcut, x)
        out += shortcut
        return F.relu_(out)


class DeformBottleneckBlock(CNNBlockBase):
    """A bottleneck block whose 3x3 conv is a (modulated) deformable convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm="BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
        deform_modulated: bool = False,
        deform_num_groups: int = 1,
    ):
        """
        Args: as ``BottleneckBlock``, plus
            deform_modulated: use ``ModulatedDeformConv`` (DCNv2) instead of ``DeformConv``.
            deform_num_groups: number of offset groups of the deformable conv.
        """
        super().__init__(in_channels, out_channels, stride)
        self.deform_modulated = deform_modulated
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
        else:
            self.shortcut = None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels,
            bottleneck_channels,
            kernel_size=1,
            stride=stride_1x1,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        if deform_modulated:
            deform_conv_op = ModulatedDeformConv
            offset_channels = 27  # 9 kernel positions x (dy, dx, mask)
        else:
            deform_conv_op = DeformConv
            offset_channels = 18  # 9 kernel positions x (dy, dx)
        self.conv2_offset = Conv2d(
            bottleneck_channels,
            offset_channels * deform_num_groups,
            kernel_size=3,
            stride=stride_3x3,
            padding=1 * dilation,
            dilation=dilation,
        )
        self.conv2 = deform_conv_op(
            bottleneck_channels,
            bottleneck_channels,
            kernel_size=3,
            stride=stride_3x3,
            padding=1 * dilation,
            bias=False,
            groups=num_groups,
            dilation=dilation,
            deformable_groups=deform_num_groups,
            norm=get_norm(norm, bottleneck_channels),
        )
        self.conv3 = Conv2d(
            bottleneck_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in [self.conv1, self.conv2, self.conv3, self.shortcut]:
            if layer is not None:
                c2_msra_fill(layer)
        # Zero offsets: the block starts as a plain bottleneck block.
        nn.init.constant_(self.conv2_offset.weight, 0)
        nn.init.constant_(self.conv2_offset.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(conv_forward(self.conv1, x))
        if self.deform_modulated:
            offset_mask = self.conv2_offset(out)  # (N, 27 * G, H, W)
            offset_x, offset_y, mask = torch.chunk(offset_mask, 3, dim=1)
            offset = torch.cat((offset_x, offset_y), dim=1)
            out = self.conv2(out, offset, mask.sigmoid())
        else:
            out = self.conv2(out, self.conv2_offset(out))
        out = F.relu_(out)
        out = conv_forward(self.conv3, out)
        shortcut = x if self.shortcut is None else conv_forward(self.shortcut, x)
        out += shortcut
        return F.relu_(out)


class BasicStem(CNNBlockBase):
    """The ResNet stem: a 7x7 stride-2 conv, ReLU, then a 3x3 stride-2 max pool (stride 4)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm="BN"):
        super().__init__(in_channels, out_channels, 4)
        self.in_channels = in_channels
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=7,
            stride=2,
            padding=3,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(conv_forward(self.conv1, x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


_STAGE_INDEX = {"res2": 1, "res3": 2, "res4": 3, "res5": 4}


class ResNet(Backbone):
    """A ResNet: a stem, then stages ``res2``..``res5`` of residual blocks, optionally a classifier.

    Args:
        stem (nn.Module): a ``CNNBlockBase`` with ``stride`` and ``out_channels``.
        stages (list[list[CNNBlockBase]]): the blocks of each stage; stage ``i`` is ``res{i+2}``.
        num_classes (int, optional): if given, add global average pooling and a linear layer
            named ``linear`` with this many outputs.
        out_features (list[str], optional): names of the outputs, among ``stem``, ``res2``..,
            ``linear``; default the last layer. Stages after the last requested are not built.
        freeze_at (int): freeze the stem (1) and the first ``freeze_at - 1`` stages, see
            ``freeze``.
    """

    def __init__(
        self,
        stem: CNNBlockBase,
        stages: Sequence[Sequence[CNNBlockBase]],
        num_classes: int | None = None,
        out_features: Sequence[str] | None = None,
        freeze_at: int = 0,
    ):
        super().__init__()
        self.stem = stem
        self.num_classes = num_classes

        current_stride = self.stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": self.stem.out_channels}

        if out_features is not None:
            unknown = [f for f in out_features if f not in ("stem", "linear", *_STAGE_INDEX)]
            if unknown:
                raise ValueError(
                    f"ResNet: unknown out_features {unknown}; expected names among "
                    f"['stem', 'res2', 'res3', 'res4', 'res5', 'linear']"
                )
            # Don't build the stages that no requested output needs.
            num_stages = max(_STAGE_INDEX.get(f, 0) for f in out_features)
            if "linear" in out_features:
                num_stages = len(stages)
            stages = stages[:num_stages]

        self.stage_names: tuple[str, ...] = ()
        self.stages: list[nn.Sequential] = []
        curr_channels = self.stem.out_channels
        for i, blocks in enumerate(stages):
            if len(blocks) == 0:
                raise ValueError(f"ResNet: stage res{i + 2} has no block")
            for block in blocks:
                if not isinstance(block, CNNBlockBase):
                    raise TypeError(
                        f"ResNet: stage res{i + 2} holds a {type(block).__name__}, "
                        "expected CNNBlockBase"
                    )
            name = "res" + str(i + 2)
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            self.stage_names += (name,)
            self.stages.append(stage)
            for block in blocks:
                current_stride *= block.stride
            self._out_feature_strides[name] = int(current_stride)
            self._out_feature_channels[name] = curr_channels = blocks[-1].out_channels

        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.linear = nn.Linear(curr_channels, num_classes)
            # N(0, 0.01) classifier init, as in Goyal et al. (2017).
            nn.init.normal_(self.linear.weight, std=0.01)
            name = "linear"

        if out_features is None:
            out_features = [name]
        self._out_features = list(out_features)
        children = [x[0] for x in self.named_children()]
        for out_feature in self._out_features:
            if out_feature not in children and out_feature != "stem":
                raise ValueError(
                    f"ResNet: out_feature {out_feature!r} is not built; available: {children}"
                )
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x (Tensor[N, C, H, W]): the input batch.

        Returns:
            dict[str, Tensor]: the requested ``out_features``.
        """
        if x.dim() != 4:
            raise ValueError(f"ResNet takes an input of shape (N, C, H, W), got {tuple(x.shape)}")
        if x.device.type == "cpu":
            # oneDNN's CPU convolutions are much faster on channels-last (NHWC) tensors; every
            # later conv, ReLU, addition and pooling keeps that layout, down to the heads.
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        if self.num_classes is not None:
            x = self.avgpool(x)
            x = torch.flatten(x, 1)
            x = self.linear(x)
            if "linear" in self._out_features:
                outputs["linear"] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freeze the first stages: 1 freezes the stem, 2 the stem and res2, and so on.

        Frozen blocks stop requiring gradients and their BatchNorm layers become
        ``FrozenBatchNorm2d`` (which also stops the statistics from updating).

        Returns:
            ResNet: ``self``.
        """
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, stage in enumerate(self.stages, start=2):
            if freeze_at >= idx:
                for block in stage.children():
                    block.freeze()
        return self

    @staticmethod
    def make_stage(
        block_class: type[CNNBlockBase],
        num_blocks: int,
        *,
        in_channels: int,
        out_channels: int,
        **kwargs: Any,
    ) -> list[CNNBlockBase]:
        """Create the blocks of one stage, all of the same class.

        A keyword argument ending in ``_per_block`` is a list of ``num_blocks`` values, the
        ``i``-th going to block ``i`` under the name without the suffix (e.g.
        ``stride_per_block=[2, 1, 1]``); the others go to every block. The first block takes
        ``in_channels``, the others ``out_channels``.

        Returns:
            list[CNNBlockBase]: the blocks.
        """
        blocks = []
        for i in range(num_blocks):
            curr_kwargs = {}
            for k, v in kwargs.items():
                if k.endswith("_per_block"):
                    if len(v) != num_blocks:
                        raise ValueError(
                            f"make_stage: {k} has {len(v)} values for {num_blocks} blocks"
                        )
                    newk = k[: -len("_per_block")]
                    if newk in kwargs:
                        raise ValueError(f"make_stage: both {k} and {newk} are given")
                    curr_kwargs[newk] = v[i]
                else:
                    curr_kwargs[k] = v
            blocks.append(
                block_class(in_channels=in_channels, out_channels=out_channels, **curr_kwargs)
            )
            in_channels = out_channels
        return blocks

    @staticmethod
    def make_default_stages(
        depth: int, block_class: type[CNNBlockBase] | None = None, **kwargs: Any
    ) -> list[list[CNNBlockBase]]:
        """The four stages of the standard ResNet of the given depth (18, 34, 50, 101 or 152).

        Args:
            depth: the ResNet depth.
            block_class: default ``BasicBlock`` below depth 50, else ``BottleneckBlock``.
            kwargs: passed to every block (e.g. ``norm``, ``stride_in_1x1``).

        Returns:
            list[list[CNNBlockBase]]: blocks of ``res2``..``res5``.
        """
        if depth not in _NUM_BLOCKS_PER_STAGE:
            raise ValueError(f"ResNet depth must be one of {list(_NUM_BLOCKS_PER_STAGE)}: {depth}")
        num_blocks_per_stage = _NUM_BLOCKS_PER_STAGE[depth]
        if block_class is None:
            block_class = BasicBlock if depth < 50 else BottleneckBlock
        if depth < 50:
            in_channels = [64, 64, 128, 256]
            out_channels = [64, 128, 256, 512]
        else:
            in_channels = [64, 256, 512, 1024]
            out_channels = [256, 512, 1024, 2048]
        ret = []
        for n, s, i, o in zip(num_blocks_per_stage, [1, 2, 2, 2], in_channels, out_channels):
            if depth >= 50:
                kwargs["bottleneck_channels"] = o // 4
            ret.append(
                ResNet.make_stage(
                    block_class=block_class,
                    num_blocks=n,
                    stride_per_block=[s] + [1] * (n - 1),
                    in_channels=i,
                    out_channels=o,
                    **kwargs,
                )
            )
        return ret


make_stage = ResNet.make_stage


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Build a ResNet from ``cfg.MODEL.RESNETS`` and ``cfg.MODEL.BACKBONE.FREEZE_AT``.

    Returns:
        ResNet: the backbone.
    """
    rcfg = cfg.MODEL.RESNETS
    norm = rcfg.NORM
    stem = BasicStem(
        in_channels=input_shape.channels, out_channels=rcfg.STEM_OUT_CHANNELS, norm=norm
    )
    freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    out_features = rcfg.OUT_FEATURES
    depth = rcfg.DEPTH
    num_groups = rcfg.NUM_GROUPS
    width_per_group = rcfg.WIDTH_PER_GROUP
    bottleneck_channels = num_groups * width_per_group
    in_channels = rcfg.STEM_OUT_CHANNELS
    out_channels = rcfg.RES2_OUT_CHANNELS
    stride_in_1x1 = rcfg.STRIDE_IN_1X1
    res5_dilation = rcfg.RES5_DILATION
    deform_on_per_stage = rcfg.DEFORM_ON_PER_STAGE
    deform_modulated = rcfg.DEFORM_MODULATED
    deform_num_groups = rcfg.DEFORM_NUM_GROUPS

    if res5_dilation not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {res5_dilation}")
    if depth not in _NUM_BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH must be one of {list(_NUM_BLOCKS_PER_STAGE)}, got {depth}"
        )
    if len(deform_on_per_stage) != 4:
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE must have 4 values (res2..res5), "
            f"got {list(deform_on_per_stage)}"
        )
    num_blocks_per_stage = _NUM_BLOCKS_PER_STAGE[depth]
    if depth in (18, 34):
        if out_channels != 64:
            raise ValueError("Must set MODEL.RESNETS.RES2_OUT_CHANNELS = 64 for R18/R34")
        if any(deform_on_per_stage):
            raise ValueError("MODEL.RESNETS.DEFORM_ON_PER_STAGE is unsupported for R18/R34")
        if res5_dilation != 1:
            raise ValueError("Must set MODEL.RESNETS.RES5_DILATION = 1 for R18/R34")
        if num_groups != 1:
            raise ValueError("Must set MODEL.RESNETS.NUM_GROUPS = 1 for R18/R34")

    stages = []
    for idx, stage_idx in enumerate(range(2, 6)):
        # res5 of a DC5 model keeps stride 1 and dilates its 3x3 convs instead.
        dilation = res5_dilation if stage_idx == 5 else 1
        first_stride = 1 if idx == 0 or (stage_idx == 5 and dilation == 2) else 2
        stage_kargs: dict[str, Any] = {
            "num_blocks": num_blocks_per_stage[idx],
            "stride_per_block": [first_stride] + [1] * (num_blocks_per_stage[idx] - 1),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": norm,
        }
        if depth in (18, 34):
            stage_kargs["block_class"] = BasicBlock
        else:
            stage_kargs["bottleneck_channels"] = bottleneck_channels
            stage_kargs["stride_in_1x1"] = stride_in_1x1
            stage_kargs["dilation"] = dilation
            stage_kargs["num_groups"] = num_groups
            if deform_on_per_stage[idx]:
                stage_kargs["block_class"] = DeformBottleneckBlock
                stage_kargs["deform_modulated"] = deform_modulated
                stage_kargs["deform_num_groups"] = deform_num_groups
            else:
                stage_kargs["block_class"] = BottleneckBlock
        stages.append(ResNet.make_stage(**stage_kargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at)

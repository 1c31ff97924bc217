"""DeepLab v3 and v3+ semantic segmentation heads.

Shape shorthand: N images, C classes, H x W the feature size at a head's input stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import ASPP, Conv2d, DepthwiseSeparableConv2d, ShapeSpec, get_norm
from torchdet.modeling import SEM_SEG_HEADS_REGISTRY
from torchdet.modeling.weight_init import c2_xavier_fill

from .loss import DeepLabCE

__all__ = ["DeepLabV3PlusHead", "DeepLabV3Head"]


def _train_pool_size(cfg, stride: int) -> tuple[int, int] | None:
    """The ASPP pooling kernel for fixed-size training crops, else None (global pooling)."""
    if not cfg.INPUT.CROP.ENABLED:
        return None
    if cfg.INPUT.CROP.TYPE != "absolute":
        raise ValueError(
            f"DeepLab needs INPUT.CROP.TYPE 'absolute' with cropping, got {cfg.INPUT.CROP.TYPE!r}"
        )
    h, w = cfg.INPUT.CROP.SIZE
    if h % stride or w % stride:
        raise ValueError(
            f"INPUT.CROP.SIZE {list(cfg.INPUT.CROP.SIZE)} must be divisible by the encoder "
            f"stride {stride}"
        )
    return h // stride, w // stride


def _build_loss(loss_type: str, ignore_value: int) -> nn.Module:
    if loss_type == "cross_entropy":
        return nn.CrossEntropyLoss(reduction="mean", ignore_index=ignore_value)
    if loss_type == "hard_pixel_mining":
        return DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=0.2)
    raise ValueError(
        f"MODEL.SEM_SEG_HEAD.LOSS_TYPE must be 'cross_entropy' or 'hard_pixel_mining', "
        f"got {loss_type!r}"
    )


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV3PlusHead(nn.Module):
    """DeepLab v3+ decoder: ASPP on the coarsest feature, then, towards finer features, a 1x1
    projection of each, concatenated with the upsampled decoder output and fused by two 3x3
    convs (or one 5x5 depthwise-separable conv). With ``num_classes=None`` it is a decoder
    only (Panoptic-DeepLab) and returns the fused features.
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        project_channels: Sequence[int],
        aspp_dilations: Sequence[int],
        aspp_dropout: float,
        decoder_channels: Sequence[int],
        common_stride: int,
        norm: str,
        train_size: Sequence[int] | None = None,
        loss_weight: float = 1.0,
        loss_type: str = "cross_entropy",
        ignore_value: int = -1,
        num_classes: int | None = None,
        use_depthwise_separable_conv: bool = False,
    ) -> None:
        """
        Args:
            input_shape: the input features (sorted by stride: fine to coarse).
            project_channels: 1x1 projection channels of every feature but the coarsest.
            aspp_dilations: the three ASPP dilations.
            aspp_dropout: dropout after ASPP.
            decoder_channels: output channels per feature (the last is ASPP's).
            common_stride: stride of the output before the final upsampling.
            norm: normalization of every conv.
            train_size: (h, w) of the training crops, for ASPP's pooling; None for global.
            loss_weight, loss_type, ignore_value: the loss.
            num_classes: predicted classes; None for a decoder-only head.
            use_depthwise_separable_conv: depthwise-separable ASPP and fuse convs.
        """
        super().__init__()
        shapes = sorted(input_shape.items(), key=lambda x: x[1].stride)
        self.in_features = [k for k, _ in shapes]
        in_channels = [v.channels for _, v in shapes]
        in_strides = [v.stride for _, v in shapes]
        if len(project_channels) != len(self.in_features) - 1:
            raise ValueError(
                f"DeepLabV3PlusHead: {len(project_channels)} project_channels for "
                f"{len(self.in_features)} features {self.in_features}; expected one fewer"
            )
        if len(decoder_channels) != len(self.in_features):
            raise ValueError(
                f"DeepLabV3PlusHead: {len(decoder_channels)} decoder_channels for features "
                f"{self.in_features}"
            )
        self.ignore_value = ignore_value
        self.common_stride = common_stride
        self.loss_weight = loss_weight
        self.loss_type = loss_type
        self.decoder_only = num_classes is None
        self.use_depthwise_separable_conv = use_depthwise_separable_conv

        use_bias = norm == ""
        self.decoder = nn.ModuleDict()
        for idx, in_channel in enumerate(in_channels):
            stage = nn.ModuleDict()
            if idx == len(self.in_features) - 1:
                pool_kernel_size = None
                if train_size is not None:
                    train_h, train_w = train_size
                    stride = in_strides[-1]
                    if train_h % stride or train_w % stride:
                        raise ValueError(
                            f"DeepLabV3PlusHead: train_size {tuple(train_size)} must be divisible "
                            f"by the encoder stride {stride}"
                        )
                    pool_kernel_size = (train_h // stride, train_w // stride)
                project_conv: nn.Module = ASPP(
                    in_channel,
                    decoder_channels[-1],
                    aspp_dilations,
                    norm=norm,
                    activation=nn.ReLU(),
                    pool_kernel_size=pool_kernel_size,
                    dropout=aspp_dropout,
                    use_depthwise_separable_conv=use_depthwise_separable_conv,
                )
                fuse_conv: nn.Module | None = None
            else:
                project_conv = Conv2d(
                    in_channel,
                    project_channels[idx],
                    kernel_size=1,
                    bias=use_bias,
                    norm=get_norm(norm, project_channels[idx]),
                    activation=F.relu,
                )
                c2_xavier_fill(project_conv)
                fuse_in = project_channels[idx] + decoder_channels[idx + 1]
                if use_depthwise_separable_conv:
                    fuse_conv = DepthwiseSeparableConv2d(
                        fuse_in,
                        decoder_channels[idx],
                        kernel_size=5,
                        padding=2,
                        norm1=norm,
                        activation1=F.relu,
                        norm2=norm,
                        activation2=F.relu,
                    )
                else:
                    fuse_conv = nn.Sequential(
                        Conv2d(
                            fuse_in,
                            decoder_channels[idx],
                            kernel_size=3,
                            padding=1,
                            bias=use_bias,
                            norm=get_norm(norm, decoder_channels[idx]),
                            activation=F.relu,
                        ),
                        Conv2d(
                            decoder_channels[idx],
                            decoder_channels[idx],
                            kernel_size=3,
                            padding=1,
                            bias=use_bias,
                            norm=get_norm(norm, decoder_channels[idx]),
                            activation=F.relu,
                        ),
                    )
                    c2_xavier_fill(fuse_conv[0])
                    c2_xavier_fill(fuse_conv[1])
            stage["project_conv"] = project_conv
            stage["fuse_conv"] = fuse_conv
            self.decoder[self.in_features[idx]] = stage

        if not self.decoder_only:
            self.predictor = Conv2d(decoder_channels[0], num_classes, kernel_size=1)
            nn.init.normal_(self.predictor.weight, 0, 0.001)
            nn.init.constant_(self.predictor.bias, 0)
            self.loss = _build_loss(loss_type, ignore_value)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        missing = [f for f in head.IN_FEATURES if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES {missing} are not backbone outputs "
                f"{list(input_shape)}"
            )
        train_size = None
        if cfg.INPUT.CROP.ENABLED:
            if cfg.INPUT.CROP.TYPE != "absolute":
                raise ValueError(
                    "DeepLab needs INPUT.CROP.TYPE 'absolute' with cropping, got "
                    f"{cfg.INPUT.CROP.TYPE!r}"
                )
            train_size = cfg.INPUT.CROP.SIZE
        decoder_channels = [head.CONVS_DIM] * (len(head.IN_FEATURES) - 1) + [head.ASPP_CHANNELS]
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "project_channels": head.PROJECT_CHANNELS,
            "aspp_dilations": head.ASPP_DILATIONS,
            "aspp_dropout": head.ASPP_DROPOUT,
            "decoder_channels": decoder_channels,
            "common_stride": head.COMMON_STRIDE,
            "norm": head.NORM,
            "train_size": train_size,
            "loss_weight": head.LOSS_WEIGHT,
            "loss_type": head.LOSS_TYPE,
            "ignore_value": head.IGNORE_VALUE,
            "num_classes": head.NUM_CLASSES,
            "use_depthwise_separable_conv": head.USE_DEPTHWISE_SEPARABLE_CONV,
        }

    def forward(self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None):
        """
        Args:
            features: backbone features by name.
            targets (Tensor[N, H_in, W_in] int64, optional): labels at the input size.

        Returns:
            decoder-only: the fused features (Tensor[N, decoder_channels[0], H, W]);
            otherwise ``(logits, {})`` at inference (Tensor[N, C, H_in, W_in]) and
            ``(None, losses)`` in training.
        """
        y = self.layers(features)
        if self.decoder_only:
            return y
        if self.training:
            if targets is None:
                raise ValueError("DeepLabV3PlusHead needs targets in training")
            return None, self.losses(y, targets)
        y = F.interpolate(y, scale_factor=self.common_stride, mode="bilinear", align_corners=False)
        return y, {}

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        y = None
        # Coarse to fine: ASPP first, then each finer feature fused with the upsampled result.
        for f in self.in_features[::-1]:
            proj_x = self.decoder[f]["project_conv"](features[f])
            if self.decoder[f]["fuse_conv"] is None:
                y = proj_x
            else:
                y = F.interpolate(y, size=proj_x.shape[2:], mode="bilinear", align_corners=False)
                y = self.decoder[f]["fuse_conv"](torch.cat([proj_x, y], dim=1))
        if not self.decoder_only:
            y = self.predictor(y)
        return y

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        predictions = F.interpolate(
            predictions, scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        return {"loss_sem_seg": self.loss(predictions, targets) * self.loss_weight}


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV3Head(nn.Module):
    """DeepLab v3: ASPP on one feature, then a 1x1 classifier."""

    def __init__(self, cfg, input_shape: dict[str, ShapeSpec]) -> None:
        super().__init__()
        head = cfg.MODEL.SEM_SEG_HEAD
        self.in_features = list(head.IN_FEATURES)
        if len(self.in_features) != 1:
            raise ValueError(
                f"DeepLabV3Head takes one feature, MODEL.SEM_SEG_HEAD.IN_FEATURES = "
                f"{self.in_features}"
            )
        if self.in_features[0] not in input_shape:
            raise KeyError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES {self.in_features} not among {list(input_shape)}"
            )
        in_channels = input_shape[self.in_features[0]].channels
        stride = input_shape[self.in_features[0]].stride
        self.ignore_value = head.IGNORE_VALUE
        self.common_stride = head.COMMON_STRIDE
        self.loss_weight = head.LOSS_WEIGHT
        self.loss_type = head.LOSS_TYPE
        self.aspp = ASPP(
            in_channels,
            head.ASPP_CHANNELS,
            head.ASPP_DILATIONS,
            norm=head.NORM,
            activation=nn.ReLU(),
            pool_kernel_size=_train_pool_size(cfg, stride),
            dropout=head.ASPP_DROPOUT,
            use_depthwise_separable_conv=head.USE_DEPTHWISE_SEPARABLE_CONV,
        )
        self.predictor = Conv2d(head.CONVS_DIM, head.NUM_CLASSES, kernel_size=1)
        nn.init.normal_(self.predictor.weight, 0, 0.001)
        nn.init.constant_(self.predictor.bias, 0)
        self.loss = _build_loss(self.loss_type, self.ignore_value)

    def forward(self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None):
        """Same contract as :class:`DeepLabV3PlusHead` (never decoder-only)."""
        x = self.predictor(self.aspp(features[self.in_features[0]]))
        if self.training:
            if targets is None:
                raise ValueError("DeepLabV3Head needs targets in training")
            return None, self.losses(x, targets)
        x = F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False)
        return x, {}

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        predictions = F.interpolate(
            predictions, scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        return {"loss_sem_seg": self.loss(predictions, targets) * self.loss_weight}

"""Panoptic-DeepLab's two decoders: semantic (``PanopticDeepLabSemSegHead``) and instance
centre/offset (``PanopticDeepLabInsEmbedHead``), each a decoder-only ``DeepLabV3PlusHead``.

Shape shorthand: N images, C classes, H x W at the decoder's stride (``common_stride``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import Conv2d, DepthwiseSeparableConv2d, ShapeSpec, get_norm
from torchdet.modeling import SEM_SEG_HEADS_REGISTRY
from torchdet.modeling.weight_init import c2_xavier_fill
from torchdet.projects.deeplab import DeepLabCE, DeepLabV3PlusHead
from torchdet.utils.registry import Registry

__all__ = [
    "INS_EMBED_BRANCHES_REGISTRY",
    "PanopticDeepLabInsEmbedHead",
    "PanopticDeepLabSemSegHead",
    "build_ins_embed_branch",
]

INS_EMBED_BRANCHES_REGISTRY = Registry("INS_EMBED_BRANCHES")
INS_EMBED_BRANCHES_REGISTRY.__doc__ = """
Registry for Panoptic-DeepLab instance embedding branches (centre and offset prediction),
called as ``obj(cfg, input_shape: dict[str, ShapeSpec])``.
"""


def build_ins_embed_branch(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Build the instance branch named by ``cfg.MODEL.INS_EMBED_HEAD.NAME``."""
    return INS_EMBED_BRANCHES_REGISTRY.get(cfg.MODEL.INS_EMBED_HEAD.NAME)(cfg, input_shape)


def _two_convs(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    use_bias = norm == ""
    convs = nn.Sequential(
        Conv2d(
            in_channels,
            in_channels,
            kernel_size=3,
            padding=1,
            bias=use_bias,
            norm=get_norm(norm, in_channels),
            activation=F.relu,
        ),
        Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            bias=use_bias,
            norm=get_norm(norm, out_channels),
            activation=F.relu,
        ),
    )
    c2_xavier_fill(convs[0])
    c2_xavier_fill(convs[1])
    return convs


def _head(in_channels: int, out_channels: int, norm: str, depthwise: bool) -> nn.Module:
    """Two 3x3 convs, or one 5x5 depthwise-separable conv (the same receptive field)."""
    if depthwise:
        return DepthwiseSeparableConv2d(
            in_channels,
            out_channels,
            kernel_size=5,
            padding=2,
            norm1=norm,
            activation1=F.relu,
            norm2=norm,
            activation2=F.relu,
        )
    return _two_convs(in_channels, out_channels, norm)


def _predictor(in_channels: int, out_channels: int) -> Conv2d:
    conv = Conv2d(in_channels, out_channels, kernel_size=1)
    nn.init.normal_(conv.weight, 0, 0.001)
    nn.init.constant_(conv.bias, 0)
    return conv


def _upsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of ``loss * weights`` over the weights' sum (a differentiable 0 when it is 0)."""
    loss = loss * weights
    total = weights.sum()
    return loss.sum() / total if total > 0 else loss.sum() * 0


@SEM_SEG_HEADS_REGISTRY.register()
class PanopticDeepLabSemSegHead(DeepLabV3PlusHead):
    """The semantic decoder with an extra conv block (``head``) before the 1x1 predictor."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        decoder_channels: Sequence[int],
        norm: str,
        head_channels: int,
        loss_weight: float,
        loss_type: str,
        loss_top_k: float,
        ignore_value: int,
        num_classes: int,
        **kwargs,
    ) -> None:
        """
        Args:
            head_channels: channels of the extra conv block.
            loss_type: "cross_entropy" or "hard_pixel_mining" (top ``loss_top_k`` pixels).
            other: see ``DeepLabV3PlusHead`` (built decoder-only).
        """
        super().__init__(
            input_shape,
            decoder_channels=decoder_channels,
            norm=norm,
            ignore_value=ignore_value,
            **kwargs,
        )
        self.loss_weight = loss_weight
        self.head = _head(
            decoder_channels[0], head_channels, norm, self.use_depthwise_separable_conv
        )
        self.predictor = _predictor(head_channels, num_classes)
        if loss_type == "cross_entropy":
            self.loss = nn.CrossEntropyLoss(reduction="mean", ignore_index=ignore_value)
        elif loss_type == "hard_pixel_mining":
            self.loss = DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=loss_top_k)
        else:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS_TYPE must be 'cross_entropy' or 'hard_pixel_mining', "
                f"got {loss_type!r}"
            )

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = DeepLabV3PlusHead.from_config(cfg, input_shape)
        ret["head_channels"] = cfg.MODEL.SEM_SEG_HEAD.HEAD_CHANNELS
        ret["loss_top_k"] = cfg.MODEL.SEM_SEG_HEAD.LOSS_TOP_K
        return ret

    def forward(
        self,
        features: dict[str, torch.Tensor],
        targets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ):
        """
        Args:
            targets (Tensor[N, H_in, W_in] int64), weights (Tensor[N, H_in, W_in]): training.

        Returns:
            ``(logits Tensor[N, C, H_in, W_in], {})`` at inference, ``(None, losses)`` in
            training.
        """
        y = self.layers(features)
        if self.training:
            if targets is None:
                raise ValueError("PanopticDeepLabSemSegHead needs targets in training")
            return None, self.losses(y, targets, weights)
        return _upsample(y, self.common_stride), {}

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor(self.head(super().layers(features)))

    def losses(
        self,
        predictions: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        predictions = _upsample(predictions, self.common_stride)
        if isinstance(self.loss, DeepLabCE):
            loss = self.loss(predictions, targets, weights)
        else:
            loss = self.loss(predictions, targets)
        return {"loss_sem_seg": loss * self.loss_weight}


@INS_EMBED_BRANCHES_REGISTRY.register()
class PanopticDeepLabInsEmbedHead(DeepLabV3PlusHead):
    """The instance decoder: a centre heatmap (MSE loss) and a 2-channel (dy, dx) offset to the
    instance centre, in input pixels (L1 loss)."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        decoder_channels: Sequence[int],
        norm: str,
        head_channels: int,
        center_loss_weight: float,
        offset_loss_weight: float,
        **kwargs,
    ) -> None:
        super().__init__(input_shape, decoder_channels=decoder_channels, norm=norm, **kwargs)
        self.center_loss_weight = center_loss_weight
        self.offset_loss_weight = offset_loss_weight
        # The centre head is always two 3x3 convs (as in the reference).
        self.center_head = _two_convs(decoder_channels[0], head_channels, norm)
        self.center_predictor = _predictor(head_channels, 1)
        self.offset_head = _head(
            decoder_channels[0], head_channels, norm, self.use_depthwise_separable_conv
        )
        self.offset_predictor = _predictor(head_channels, 2)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.INS_EMBED_HEAD
        missing = [f for f in head.IN_FEATURES if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.INS_EMBED_HEAD.IN_FEATURES {missing} are not backbone outputs "
                f"{list(input_shape)}"
            )
        train_size = None
        if cfg.INPUT.CROP.ENABLED:
            if cfg.INPUT.CROP.TYPE != "absolute":
                raise ValueError(
                    "Panoptic-DeepLab needs INPUT.CROP.TYPE 'absolute' with cropping, got "
                    f"{cfg.INPUT.CROP.TYPE!r}"
                )
            train_size = cfg.INPUT.CROP.SIZE
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "project_channels": head.PROJECT_CHANNELS,
            "aspp_dilations": head.ASPP_DILATIONS,
            "aspp_dropout": head.ASPP_DROPOUT,
            "decoder_channels": [head.CONVS_DIM] * (len(head.IN_FEATURES) - 1)
            + [head.ASPP_CHANNELS],
            "common_stride": head.COMMON_STRIDE,
            "norm": head.NORM,
            "train_size": train_size,
            "head_channels": head.HEAD_CHANNELS,
            "center_loss_weight": head.CENTER_LOSS_WEIGHT,
            "offset_loss_weight": head.OFFSET_LOSS_WEIGHT,
            "use_depthwise_separable_conv": cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV,
        }

    def forward(
        self,
        features: dict[str, torch.Tensor],
        center_targets: torch.Tensor | None = None,
        center_weights: torch.Tensor | None = None,
        offset_targets: torch.Tensor | None = None,
        offset_weights: torch.Tensor | None = None,
    ):
        """
        Args:
            center_targets (Tensor[N, 1, H_in, W_in]), center_weights (Tensor[N, 1, H_in,
                W_in]), offset_targets (Tensor[N, 2, H_in, W_in]), offset_weights
                (Tensor[N, 1, H_in, W_in]): training targets.

        Returns:
            ``(center Tensor[N, 1, H_in, W_in], offset Tensor[N, 2, H_in, W_in], {}, {})`` at
            inference; ``(None, None, center_losses, offset_losses)`` in training.
        """
        center, offset = self.layers(features)
        if self.training:
            if center_targets is None or offset_targets is None:
                raise ValueError(
                    "PanopticDeepLabInsEmbedHead needs center and offset targets in training"
                )
            return (
                None,
                None,
                self.center_losses(center, center_targets, center_weights),
                self.offset_losses(offset, offset_targets, offset_weights),
            )
        center = _upsample(center, self.common_stride)
        # Offsets are predicted in units of the decoder's stride.
        offset = _upsample(offset, self.common_stride) * self.common_stride
        return center, offset, {}, {}

    def layers(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        y = super().layers(features)
        center = self.center_predictor(self.center_head(y))
        offset = self.offset_predictor(self.offset_head(y))
        return center, offset

    def center_losses(
        self, predictions: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        predictions = _upsample(predictions, self.common_stride)
        loss = _weighted_mean(F.mse_loss(predictions, targets, reduction="none"), weights)
        return {"loss_center": loss * self.center_loss_weight}

    def offset_losses(
        self, predictions: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        predictions = _upsample(predictions, self.common_stride) * self.common_stride
        loss = _weighted_mean(F.l1_loss(predictions, targets, reduction="none"), weights)
        return {"loss_offset": loss * self.offset_loss_weight}

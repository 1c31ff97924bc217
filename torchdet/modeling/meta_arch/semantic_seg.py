"""Semantic segmentation: ``SemanticSegmentor`` (a backbone and a per-pixel head) and the
Panoptic FPN semantic head ``SemSegFPNHead``.

Shape shorthand: N images, C classes, H x W the padded input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import Conv2d, ShapeSpec, get_norm
from torchdet.structures import ImageList
from torchdet.utils.registry import Registry

from ..backbone import Backbone, build_backbone
from ..postprocessing import sem_seg_postprocess
from ..weight_init import c2_msra_fill
from .build import META_ARCH_REGISTRY
from .rcnn import _check_batched_inputs, _normalize_and_pad

__all__ = [
    "SemanticSegmentor",
    "SEM_SEG_HEADS_REGISTRY",
    "SemSegFPNHead",
    "build_sem_seg_head",
]

SEM_SEG_HEADS_REGISTRY = Registry("SEM_SEG_HEADS")
SEM_SEG_HEADS_REGISTRY.__doc__ = """
Registry for semantic segmentation heads, which predict per-pixel class logits from
backbone features.

A registered object is called as ``obj(cfg, input_shape: dict[str, ShapeSpec])``.
"""


def build_sem_seg_head(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Build the semantic segmentation head named by ``cfg.MODEL.SEM_SEG_HEAD.NAME``."""
    name = cfg.MODEL.SEM_SEG_HEAD.NAME
    return SEM_SEG_HEADS_REGISTRY.get(name)(cfg, input_shape)


def _pad_targets(batched_inputs: list[dict], device, backbone: Backbone, ignore_value: int):
    """The ``sem_seg`` targets of a batch, padded like the images with ``ignore_value``.

    Returns:
        Tensor[N, H, W] int64.
    """
    targets = [x["sem_seg"].to(device) for x in batched_inputs]
    return ImageList.from_tensors(
        targets,
        backbone.size_divisibility,
        ignore_value,
        padding_constraints=backbone.padding_constraints,
    ).tensor


@META_ARCH_REGISTRY.register()
class SemanticSegmentor(nn.Module):
    """A backbone and a semantic segmentation head.

    Training returns the head's losses (inputs need ``sem_seg``: Tensor[H, W] int64 labels);
    inference returns, per image, ``{"sem_seg": Tensor[C, height, width]}`` logits at the
    input's ``height`` x ``width``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        Args:
            backbone: extracts the features.
            sem_seg_head: predicts per-pixel logits from the features.
            pixel_mean, pixel_std: input normalisation.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs (list[dict]): ``image`` (Tensor[C, H, W]), ``sem_seg`` in
                training, optionally ``height``/``width``.

        Returns:
            In training the losses; at inference ``list[dict]`` with ``sem_seg``.
        """
        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = _normalize_and_pad(batched_inputs, self.pixel_mean, self.pixel_std, self.backbone)
        features = self.backbone(images.tensor)

        if "sem_seg" in batched_inputs[0]:
            targets = _pad_targets(
                batched_inputs, self.device, self.backbone, self.sem_seg_head.ignore_value
            )
        else:
            if self.training:
                raise KeyError("SemanticSegmentor needs 'sem_seg' in its inputs to train")
            targets = None
        results, losses = self.sem_seg_head(features, targets)

        if self.training:
            return losses

        processed_results = []
        for result, input_per_image, image_size in zip(results, batched_inputs, images.image_sizes):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            r = sem_seg_postprocess(result, image_size, height, width)
            processed_results.append({"sem_seg": r})
        return processed_results


@SEM_SEG_HEADS_REGISTRY.register()
class SemSegFPNHead(nn.Module):
    """The semantic head of Panoptic FPN: each level goes through 3x3 convs and 2x bilinear
    upsamplings down to ``common_stride``; the levels are summed and a 1x1 conv predicts
    the logits, upsampled to the input size.

    Parameters are ``<level name>.<k>.*`` (e.g. ``p2.0.weight``) and ``predictor.*``.
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        conv_dims: int,
        common_stride: int,
        loss_weight: float = 1.0,
        norm: str | None = None,
        ignore_value: int = -1,
    ):
        """
        Args:
            input_shape: the input feature maps by name.
            num_classes: C.
            conv_dims: channels of the convs.
            common_stride: the stride all levels are brought to before summing.
            loss_weight: weight of ``loss_sem_seg``.
            norm: normalization after each conv (None or "" for none).
            ignore_value: label ignored by the loss (also the padding of the targets).
        """
        super().__init__()
        input_shape = sorted(input_shape.items(), key=lambda x: x[1].stride)
        if not len(input_shape):
            raise ValueError("SemSegFPNHead(input_shape=) cannot be empty!")
        self.in_features = [k for k, v in input_shape]
        feature_strides = [v.stride for k, v in input_shape]
        feature_channels = [v.channels for k, v in input_shape]

        self.ignore_value = ignore_value
        self.common_stride = common_stride
        self.loss_weight = loss_weight

        self.scale_heads = []
        for in_feature, stride, channels in zip(
            self.in_features, feature_strides, feature_channels
        ):
            head_ops = []
            head_length = max(1, int(np.log2(stride) - np.log2(self.common_stride)))
            for k in range(head_length):
                norm_module = get_norm(norm, conv_dims)
                conv = Conv2d(
                    channels if k == 0 else conv_dims,
                    conv_dims,
                    kernel_size=3,
                    stride=1,
                    padding=1,
                    bias=not norm,
                    norm=norm_module,
                    activation=F.relu,
                )
                c2_msra_fill(conv)
                head_ops.append(conv)
                if stride != self.common_stride:
                    head_ops.append(
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
                    )
            self.scale_heads.append(nn.Sequential(*head_ops))
            # Registered under the level's name (not a ModuleList): Detectron2's key names.
            self.add_module(in_feature, self.scale_heads[-1])
        self.predictor = Conv2d(conv_dims, num_classes, kernel_size=1, stride=1, padding=0)
        c2_msra_fill(self.predictor)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        in_features = cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES {missing} are not backbone outputs "
                f"(the backbone has {list(input_shape)})"
            )
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in in_features},
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "conv_dims": cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM,
            "common_stride": cfg.MODEL.SEM_SEG_HEAD.COMMON_STRIDE,
            "norm": cfg.MODEL.SEM_SEG_HEAD.NORM,
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
        }

    def forward(self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None):
        """
        Args:
            features (dict[str, Tensor[N, C_l, H_l, W_l]]): backbone features.
            targets (Tensor[N, H, W] int64, optional): labels, required in training.

        Returns:
            In training ``(None, {"loss_sem_seg": Tensor})``; at inference
            ``(Tensor[N, C, H, W] logits, {})``.
        """
        x = self.layers(features)
        if self.training:
            if targets is None:
                raise ValueError("SemSegFPNHead needs targets in training")
            return None, self.losses(x, targets)
        x = F.interpolate(x, scale_factor=self.common_stride, mode="bilinear", align_corners=False)
        return x, {}

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits at ``common_stride``: Tensor[N, C, H / s, W / s]."""
        for i, f in enumerate(self.in_features):
            if i == 0:
                x = self.scale_heads[i](features[f])
            else:
                x = x + self.scale_heads[i](features[f])
        return self.predictor(x)

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pixel-wise cross-entropy at the input resolution, ignoring ``ignore_value``."""
        predictions = predictions.float()  # the loss in fp32 even under mixed precision
        predictions = F.interpolate(
            predictions, scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        loss = F.cross_entropy(
            predictions, targets, reduction="mean", ignore_index=self.ignore_value
        )
        return {"loss_sem_seg": loss * self.loss_weight}

"""Box heads: turn pooled RoI features into a feature vector for the box predictor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from torchdet.config import configurable
from torchdet.layers import Conv2d, ShapeSpec, get_norm
from torchdet.utils.registry import Registry

from ..weight_init import c2_msra_fill, c2_xavier_fill

__all__ = ["FastRCNNConvFCHead", "build_box_head", "ROI_BOX_HEAD_REGISTRY"]

ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = """
Registry for box heads, which make per-region features from pooled RoI features.

A registered object is called as ``obj(cfg, input_shape: ShapeSpec)``.
"""


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Sequential):
    """Convs (3x3, ReLU, optional norm) then fully connected layers (ReLU).

    Parameter names follow Detectron2: ``conv1``, ``conv2``..., ``fc1``, ``fc2``...
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        conv_dims: Sequence[int],
        fc_dims: Sequence[int],
        conv_norm: str = "",
    ):
        """
        Args:
            input_shape (ShapeSpec): the pooled features (channels, height, width).
            conv_dims: output channels of each conv (may be empty).
            fc_dims: output size of each fully connected layer (may be empty).
            conv_norm: normalization after each conv ("" for none; e.g. "GN", "BN").
        """
        super().__init__()
        if len(conv_dims) + len(fc_dims) == 0:
            raise ValueError("FastRCNNConvFCHead needs at least one conv or fc layer")
        self._output_size: int | tuple[int, int, int] = (
            input_shape.channels,
            input_shape.height,
            input_shape.width,
        )

        self.conv_norm_relus = []
        for k, conv_dim in enumerate(conv_dims):
            conv = Conv2d(
                self._output_size[0],
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, conv_dim),
                activation=nn.ReLU(),
            )
            self.add_module(f"conv{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            self._output_size = (conv_dim, self._output_size[1], self._output_size[2])

        self.fcs = []
        for k, fc_dim in enumerate(fc_dims):
            if k == 0:
                self.add_module("flatten", nn.Flatten())
            fc = nn.Linear(int(np.prod(self._output_size)), fc_dim)
            self.add_module(f"fc{k + 1}", fc)
            self.add_module(f"fc_relu{k + 1}", nn.ReLU())
            self.fcs.append(fc)
            self._output_size = fc_dim

        for layer in self.conv_norm_relus:
            c2_msra_fill(layer)
        for layer in self.fcs:
            c2_xavier_fill(layer)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        num_conv = cfg.MODEL.ROI_BOX_HEAD.NUM_CONV
        conv_dim = cfg.MODEL.ROI_BOX_HEAD.CONV_DIM
        num_fc = cfg.MODEL.ROI_BOX_HEAD.NUM_FC
        fc_dim = cfg.MODEL.ROI_BOX_HEAD.FC_DIM
        return {
            "input_shape": input_shape,
            "conv_dims": [conv_dim] * num_conv,
            "fc_dims": [fc_dim] * num_fc,
            "conv_norm": cfg.MODEL.ROI_BOX_HEAD.NORM,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (Tensor[M, C, H, W]): pooled features of M regions.

        Returns:
            Tensor[M, fc_dims[-1]] (or Tensor[M, C', H, W] without fc layers).
        """
        for layer in self:
            x = layer(x)
        return x

    @property
    def output_shape(self) -> ShapeSpec:
        """The shape of the output (channels, and height/width when there is no fc)."""
        o = self._output_size
        if isinstance(o, int):
            return ShapeSpec(channels=o)
        return ShapeSpec(channels=o[0], height=o[1], width=o[2])


def build_box_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build the box head named by ``cfg.MODEL.ROI_BOX_HEAD.NAME``."""
    name = cfg.MODEL.ROI_BOX_HEAD.NAME
    return ROI_BOX_HEAD_REGISTRY.get(name)(cfg, input_shape)

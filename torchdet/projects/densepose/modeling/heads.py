"""The DensePose RoI head (stacked convs) and the chart predictor (IUV)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.layers import Conv2d, ConvTranspose2d
from torchdet.utils.registry import Registry

from ..structures import DensePoseChartPredictorOutput

__all__ = [
    "DENSEPOSE_PREDICTOR_REGISTRY",
    "ROI_DENSEPOSE_HEAD_REGISTRY",
    "DensePoseChartPredictor",
    "DensePoseChartWithConfidencePredictor",
    "DensePoseV1ConvXHead",
    "build_densepose_head",
    "build_densepose_predictor",
    "initialize_module_params",
]

ROI_DENSEPOSE_HEAD_REGISTRY = Registry("ROI_DENSEPOSE_HEAD")
ROI_DENSEPOSE_HEAD_REGISTRY.__doc__ = "DensePose RoI heads, called as ``obj(cfg, input_channels)``."
DENSEPOSE_PREDICTOR_REGISTRY = Registry("DENSEPOSE_PREDICTOR")
DENSEPOSE_PREDICTOR_REGISTRY.__doc__ = (
    "DensePose predictors, called as ``obj(cfg, input_channels)``."
)


def initialize_module_params(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) weights and zero biases, as the reference."""
    for name, param in module.named_parameters():
        if "bias" in name:
            nn.init.constant_(param, 0)
        elif "weight" in name:
            nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


@ROI_DENSEPOSE_HEAD_REGISTRY.register()
class DensePoseV1ConvXHead(nn.Module):
    """``NUM_STACKED_CONVS`` convs (``CONV_HEAD_DIM`` channels, ``CONV_HEAD_KERNEL``), each
    followed by ReLU, named ``body_conv_fcn{i}``."""

    def __init__(self, cfg, input_channels: int) -> None:
        super().__init__()
        h = cfg.MODEL.ROI_DENSEPOSE_HEAD
        hidden_dim, kernel_size = h.CONV_HEAD_DIM, h.CONV_HEAD_KERNEL
        self.n_stacked_convs = h.NUM_STACKED_CONVS
        n_channels = input_channels
        for i in range(self.n_stacked_convs):
            layer = Conv2d(n_channels, hidden_dim, kernel_size, stride=1, padding=kernel_size // 2)
            self.add_module(f"body_conv_fcn{i + 1}", layer)
            n_channels = hidden_dim
        self.n_out_channels = n_channels
        initialize_module_params(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (Tensor[N, C, R, R]). Returns: Tensor[N, CONV_HEAD_DIM, R, R]."""
        x = features
        for i in range(self.n_stacked_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


@DENSEPOSE_PREDICTOR_REGISTRY.register()
class DensePoseChartPredictor(nn.Module):
    """Four stride-2 transposed convs (coarse segmentation, fine segmentation, U, V), each
    output upsampled bilinearly by ``UP_SCALE``."""

    def __init__(self, cfg, input_channels: int) -> None:
        super().__init__()
        h = cfg.MODEL.ROI_DENSEPOSE_HEAD
        n_segm = h.NUM_COARSE_SEGM_CHANNELS
        n_patches = h.NUM_PATCHES + 1
        k = h.DECONV_KERNEL
        pad = int(k / 2 - 1)
        self.ann_index_lowres = ConvTranspose2d(input_channels, n_segm, k, stride=2, padding=pad)
        self.index_uv_lowres = ConvTranspose2d(input_channels, n_patches, k, stride=2, padding=pad)
        self.u_lowres = ConvTranspose2d(input_channels, n_patches, k, stride=2, padding=pad)
        self.v_lowres = ConvTranspose2d(input_channels, n_patches, k, stride=2, padding=pad)
        self.scale_factor = h.UP_SCALE
        initialize_module_params(self)

    def interp2d(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False
        )

    def forward(self, head_outputs: torch.Tensor) -> DensePoseChartPredictorOutput:
        """Args: head_outputs (Tensor[N, C, R, R]). Returns: outputs at 2 * UP_SCALE * R."""
        return DensePoseChartPredictorOutput(
            coarse_segm=self.interp2d(self.ann_index_lowres(head_outputs)),
            fine_segm=self.interp2d(self.index_uv_lowres(head_outputs)),
            u=self.interp2d(self.u_lowres(head_outputs)),
            v=self.interp2d(self.v_lowres(head_outputs)),
        )


@DENSEPOSE_PREDICTOR_REGISTRY.register()
class DensePoseChartWithConfidencePredictor(DensePoseChartPredictor):
    """The chart predictor of configs that name the confidence variant. Only the
    configuration without confidences (``UV_CONFIDENCE`` / ``SEGM_CONFIDENCE`` disabled) is
    implemented; its outputs are those of ``DensePoseChartPredictor``."""

    def __init__(self, cfg, input_channels: int) -> None:
        h = cfg.MODEL.ROI_DENSEPOSE_HEAD
        if h.UV_CONFIDENCE.ENABLED or h.SEGM_CONFIDENCE.ENABLED:
            raise NotImplementedError(
                "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE / SEGM_CONFIDENCE are not implemented "
                "in torchdet; disable them"
            )
        super().__init__(cfg, input_channels)


def build_densepose_head(cfg, input_channels: int) -> nn.Module:
    return ROI_DENSEPOSE_HEAD_REGISTRY.get(cfg.MODEL.ROI_DENSEPOSE_HEAD.NAME)(cfg, input_channels)


def build_densepose_predictor(cfg, input_channels: int) -> nn.Module:
    name = cfg.MODEL.ROI_DENSEPOSE_HEAD.PREDICTOR_NAME
    return DENSEPOSE_PREDICTOR_REGISTRY.get(name)(cfg, input_channels)

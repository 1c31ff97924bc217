"""DensePose R-CNN modeling: RoI heads, the chart head and predictor, losses."""

from .heads import (
    DENSEPOSE_PREDICTOR_REGISTRY,
    ROI_DENSEPOSE_HEAD_REGISTRY,
    DensePoseChartPredictor,
    DensePoseChartWithConfidencePredictor,
    DensePoseV1ConvXHead,
    build_densepose_head,
    build_densepose_predictor,
)
from .losses import DensePoseChartLoss, resample_data
from .roi_heads import Decoder, DensePoseDataFilter, DensePoseROIHeads, densepose_inference

__all__ = [k for k in globals() if not k.startswith("_")]

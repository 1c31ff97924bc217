"""DensePose R-CNN ("DensePose: Dense Human Pose Estimation In The Wild", Güler et al. 2018),
chart-based (IUV) variant.

Importing this package registers ``DensePoseROIHeads`` (``ROI_HEADS_REGISTRY``),
``DensePoseV1ConvXHead`` and the chart predictors. Call :func:`add_densepose_config` on a
``get_cfg()`` before merging a DensePose config. Each inferred instance carries
``pred_densepose`` (a ``DensePoseChartPredictorOutput`` over its box).
"""

from .config import add_densepose_config
from .modeling import (
    DENSEPOSE_PREDICTOR_REGISTRY,
    ROI_DENSEPOSE_HEAD_REGISTRY,
    Decoder,
    DensePoseChartLoss,
    DensePoseChartPredictor,
    DensePoseChartWithConfidencePredictor,
    DensePoseDataFilter,
    DensePoseROIHeads,
    DensePoseV1ConvXHead,
    densepose_inference,
)
from .structures import DensePoseChartPredictorOutput, DensePoseDataRelative

__all__ = [k for k in globals() if not k.startswith("_")]

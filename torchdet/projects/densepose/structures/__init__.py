"""DensePose data structures: predictor outputs and ground truth."""

from .chart import DensePoseChartPredictorOutput
from .data_relative import DensePoseDataRelative
from .densepose_list import DensePoseList

__all__ = [k for k in globals() if not k.startswith("_")]

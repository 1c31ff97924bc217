"""DensePose evaluation: GPS / GPSm and AP over them."""

from .evaluator import DensePoseEvaluator
from .gps import GPS_KAPPA, average_precision, chart_at_points, gps, gpsm, uv_distance

__all__ = [k for k in globals() if not k.startswith("_")]

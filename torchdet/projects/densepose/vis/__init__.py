"""DensePose visualisation: part index and U/V contours."""

from .chart import densepose_to_iuv, visualize_part_index, visualize_uv_contours

__all__ = [k for k in globals() if not k.startswith("_")]

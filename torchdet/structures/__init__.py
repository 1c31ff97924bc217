"""Typed containers passed between stages: boxes, rotated boxes, instances, image batches,
masks and keypoints (Detectron2's ``detectron2.structures``)."""

from .boxes import (
    Boxes,
    BoxMode,
    matched_pairwise_iou,
    pairwise_intersection,
    pairwise_ioa,
    pairwise_iou,
    pairwise_point_box_distance,
)
from .image_list import ImageList
from .instances import Instances
from .keypoints import Keypoints, heatmaps_to_keypoints
from .masks import (
    BitMasks,
    PolygonMasks,
    ROIMasks,
    polygon_area,
    polygons_to_bitmask,
    rasterize_polygons_within_box,
)
from .rotated_boxes import RotatedBoxes
from .rotated_boxes import pairwise_iou as pairwise_iou_rotated

__all__ = [
    "BitMasks",
    "BoxMode",
    "Boxes",
    "ImageList",
    "Instances",
    "Keypoints",
    "PolygonMasks",
    "ROIMasks",
    "RotatedBoxes",
    "heatmaps_to_keypoints",
    "matched_pairwise_iou",
    "pairwise_intersection",
    "pairwise_ioa",
    "pairwise_iou",
    "pairwise_iou_rotated",
    "pairwise_point_box_distance",
    "polygon_area",
    "polygons_to_bitmask",
    "rasterize_polygons_within_box",
]

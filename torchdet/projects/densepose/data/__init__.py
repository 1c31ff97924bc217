"""DensePose data: the COCO DensePose loader, the training mapper, a synthetic dataset."""

from .coco import DENSEPOSE_KEYS, load_densepose_coco_json, register_densepose_coco
from .dataset_mapper import DensePoseDatasetMapper
from .synthetic import make_synthetic_densepose_dataset, synthetic_iuv

__all__ = [k for k in globals() if not k.startswith("_")]

"""Saving and loading model weights, including Detectron1/Detectron2 model-zoo files."""

from . import catalog as _catalog  # registers the catalog:// prefix with PathManager
from .c2_model_loading import (
    align_and_update_state_dicts,
    convert_basic_c2_names,
    convert_c2_detectron_names,
    convert_torchvision_resnet_names,
)
from .catalog import ModelCatalog
from .checkpointer import (
    Checkpointer,
    IncompatibleCheckpointError,
    IncompatibleKeys,
    PeriodicCheckpointer,
    UnsafeCheckpointError,
)
from .detection_checkpoint import DetectionCheckpointer

__all__ = [
    "Checkpointer",
    "DetectionCheckpointer",
    "IncompatibleCheckpointError",
    "IncompatibleKeys",
    "ModelCatalog",
    "PeriodicCheckpointer",
    "UnsafeCheckpointError",
    "align_and_update_state_dicts",
    "convert_basic_c2_names",
    "convert_c2_detectron_names",
    "convert_torchvision_resnet_names",
]

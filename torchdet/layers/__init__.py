"""Operators and layers: NMS, normalization, conv/loss wrappers, RoI ops and building blocks."""

from .batch_norm import (
    CycleBatchNormList,
    FrozenBatchNorm2d,
    LayerNorm,
    NaiveSyncBatchNorm,
    get_norm,
)
from .nms import batched_nms, batched_nms_rotated, nms, nms_rotated
from .shape_spec import ShapeSpec
from .wrappers import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Linear,
    cat,
    check_if_dynamo_compiling,
    cross_entropy,
    empty_input_loss_func_wrapper,
    interpolate,
    move_device_like,
    nonzero_tuple,
    shapes_to_tensor,
)

__all__ = [k for k in globals() if not k.startswith("_")]

"""ONNX export of torchdet models (runs in ONNX Runtime without torchdet).

The model is traced through :class:`TracingAdapter` by PyTorch's TorchScript-based ONNX exporter
(``dynamo=False``): Detectron2's models branch on Python values (number of images, empty inputs),
which a trace resolves on the sample while keeping tensor sizes symbolic. NMS and RoIAlign are
recorded as the standard ONNX ``NonMaxSuppression`` and ``RoiAlign`` ops (see
``torchdet.layers.tracing``); image height and width are dynamic axes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchdet.layers.tracing import register_onnx_symbolics

from .flatten import TracingAdapter
from .inference import export_inference_func

__all__ = ["DEFAULT_OPSET", "export_onnx"]

# RoiAlign with half-pixel coordinates (Detectron2's aligned=True) needs opset >= 16.
DEFAULT_OPSET = 17


def export_onnx(
    model: nn.Module,
    image: torch.Tensor,
    path: str | os.PathLike,
    *,
    inference_func: Callable[[nn.Module, torch.Tensor], Any] | None = None,
    opset_version: int = DEFAULT_OPSET,
    dynamic_hw: bool = True,
) -> TracingAdapter:
    """Export ``model`` (in eval mode) to an ONNX file.

    Args:
        model: a torchdet model (see :func:`export_inference_func` for what the graph outputs).
        image (Tensor[C, H, W]): a sample input, resized and in the model's input format (uint8
            or float); inputs of other sizes work when ``dynamic_hw``.
        path: the ``.onnx`` file to write.
        inference_func: ``f(model, image)``; default: :func:`export_inference_func` of the model.
        opset_version: ONNX opset, at least 16.
        dynamic_hw: make the image height and width dynamic axes.

    Returns:
        TracingAdapter: its ``outputs_schema`` rebuilds the graph's flat outputs (in order) into
        ``Instances`` / tensors.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(
            f"export_onnx: image must be a Tensor[C, H, W], got "
            f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}"
        )
    if model.training:
        raise ValueError("export_onnx: call model.eval() first (inference graphs only)")
    register_onnx_symbolics(opset_version)
    adapter = TracingAdapter(model, image, inference_func or export_inference_func(model))
    with warnings.catch_warnings():
        # The tracer warns about every Python-side decision it freezes; they are intended.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            adapter,
            adapter.flattened_inputs,
            str(path),
            dynamo=False,
            opset_version=opset_version,
            autograd_inlining=False,
            input_names=["image"],
            dynamic_axes={"image": {1: "height", 2: "width"}} if dynamic_hw else None,
        )
    return adapter

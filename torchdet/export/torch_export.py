"""``torch.export`` programs of torchdet models.

``torch.export.export`` captures a graph with symbolic shapes and refuses Python branches on
tensor values. torchdet's detectors decide on data at several places at inference (score
thresholds with ``nonzero``, NMS outputs, empty-detection branches), so whole detectors are not
exportable this way (see ``README.md``); dense models (``SemanticSegmentor``) and the feature
extractors of every architecture (backbone + FPN, the RPN/RetinaNet heads' raw outputs) are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .flatten import TracingAdapter
from .inference import export_inference_func

__all__ = ["export_program"]


def export_program(
    model: nn.Module,
    image: torch.Tensor,
    *,
    inference_func: Callable[[nn.Module, torch.Tensor], Any] | None = None,
    dynamic_hw: bool = True,
    strict: bool = False,
) -> tuple[torch.export.ExportedProgram, TracingAdapter]:
    """``torch.export.export`` a model on one sample image.

    Args:
        model: a torchdet model in eval mode, or any module taking one image.
        image (Tensor[C, H, W]): a sample input.
        inference_func: ``f(model, image)``; default :func:`export_inference_func` of the model.
        dynamic_hw: make H and W symbolic (``torch.export.Dim.AUTO``).
        strict: ``torch.export``'s strict (TorchDynamo) mode.

    Returns:
        (ExportedProgram, TracingAdapter): ``program.module()(image)`` gives the flat outputs,
        which ``adapter.outputs_schema`` rebuilds.

    Raises:
        ValueError: on a bad sample image or a model in training mode.
        RuntimeError: when the architecture decides on tensor values (torch.export's message is
            chained).
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError("export_program: image must be a Tensor[C, H, W]")
    if model.training:
        raise ValueError("export_program: call model.eval() first (inference graphs only)")
    if inference_func is None:
        try:
            inference_func = export_inference_func(model)
        except TypeError:
            inference_func = lambda m, x: m(x)  # noqa: E731  (a plain module)
    adapter = TracingAdapter(model, image, inference_func)
    with torch.no_grad():
        adapter(*adapter.flattened_inputs)  # fills outputs_schema
    dynamic = None
    if dynamic_hw:
        auto = torch.export.Dim.AUTO
        # forward(*args): the varargs tuple is one input holding the image
        dynamic = (({1: auto, 2: auto},),)
    try:
        program = torch.export.export(
            adapter, adapter.flattened_inputs, dynamic_shapes=dynamic, strict=strict
        )
    except Exception as e:  # torch.export raises several internal error types
        raise RuntimeError(
            f"export_program: torch.export cannot capture {type(model).__name__}: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    return program, adapter

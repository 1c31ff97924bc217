"""TorchScript export by tracing: the saved program runs with plain ``torch`` (no torchdet).

Detectron2 offers scripting (``scripting_with_instances``) and tracing. torchdet's models branch
on Python values and use dataclass-like structures that TorchScript's compiler cannot type, so the
supported path is tracing through :class:`TracingAdapter`; NMS and RoIAlign then appear as calls
to small scripted functions (``torchdet.layers.tracing``), which keep loops and data-dependent
sizes, so the program is valid for any image size and number of boxes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .flatten import TracingAdapter
from .inference import export_inference_func

__all__ = ["dump_torchscript_IR", "export_torchscript", "scripting_with_instances"]


def export_torchscript(
    model: nn.Module,
    image: torch.Tensor,
    path: str | os.PathLike | None = None,
    *,
    inference_func: Callable[[nn.Module, torch.Tensor], Any] | None = None,
) -> tuple[torch.jit.ScriptModule, TracingAdapter]:
    """Trace ``model`` (eval mode) on one sample image and optionally save it.

    Args:
        model: a torchdet model.
        image (Tensor[C, H, W]): a sample input, resized and in the model's input format.
        path: where to ``torch.jit.save`` the program (``.ts``/``.pt``), or None.
        inference_func: ``f(model, image)``; default :func:`export_inference_func` of the model.

    Returns:
        (ScriptModule, TracingAdapter): the traced program (``program(image)`` -> flat tuple of
        tensors) and the adapter whose ``outputs_schema`` rebuilds the outputs.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError("export_torchscript: image must be a Tensor[C, H, W]")
    if model.training:
        raise ValueError("export_torchscript: call model.eval() first (inference graphs only)")
    adapter = TracingAdapter(model, image, inference_func or export_inference_func(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about frozen Python values
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    if path is not None:
        traced.save(str(path))
    return traced, adapter


def scripting_with_instances(model: nn.Module, fields: dict[str, type]) -> torch.jit.ScriptModule:
    """Detectron2's scripting entry point: ``torch.jit.script`` a module whose code uses
    ``Instances`` with the given ``fields``.

    torchdet's ``Instances`` is a plain Python class, so this works for modules that are
    scriptable on their own (e.g. backbones, heads without ``Instances``); full detectors raise
    ``TypeError`` with the reason, and :func:`export_torchscript` (tracing) is the supported route.

    Args:
        model: the module to script (eval mode).
        fields: ``{name: type}`` of the ``Instances`` fields (kept for API compatibility).
    """
    if not isinstance(fields, dict):
        raise TypeError(f"scripting_with_instances: fields must be a dict, got {type(fields)}")
    try:
        return torch.jit.script(model)
    except Exception as e:  # TorchScript's frontend raises several error types
        raise TypeError(
            f"scripting_with_instances: {type(model).__name__} cannot be scripted "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "use export_torchscript (tracing)"
        ) from e


def dump_torchscript_IR(model: torch.jit.ScriptModule, dir: str | os.PathLike) -> None:  # noqa: A002
    """Write a TorchScript program's code and graph to ``dir`` for inspection:
    ``model_ts_code.txt`` (Python-like code of every submodule) and ``model_ts_IR.txt``
    (the inlined graph).
    """
    if not isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise TypeError(f"dump_torchscript_IR: expected a ScriptModule, got {type(model)}")
    os.makedirs(dir, exist_ok=True)
    with open(os.path.join(dir, "model_ts_code.txt"), "w") as f:

        def dump_code(prefix: str, mod: Any) -> None:
            code = getattr(mod, "code", None)
            if code:
                kind = getattr(mod, "original_name", type(mod).__name__)
                f.write(f"Code for {prefix}, type={kind}:\n")
                f.write(code + "\n" + "-" * 80 + "\n")
            for name, child in getattr(mod, "_modules", {}).items():
                dump_code(f"{prefix}.{name}", child)

        dump_code("model", model)
    graph = model.inlined_graph if hasattr(model, "inlined_graph") else model.graph
    with open(os.path.join(dir, "model_ts_IR.txt"), "w") as f:
        f.write(str(graph))

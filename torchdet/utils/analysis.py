"""Model complexity: FLOPs (``torch.utils.flop_counter.FlopCounterMode``), activations and
parameter counts, with Detectron2's ``detectron2.utils.analysis`` names.

FLOPs follow fvcore's (and so Detectron2's) convention: one multiply-add counts as ONE flop,
i.e. half of what ``FlopCounterMode`` reports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from tabulate import tabulate
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "FlopCountAnalysis",
    "activation_count_operators",
    "flop_count_operators",
    "parameter_count",
    "parameter_count_table",
]

# aten op name -> fvcore's operator name
_OP_NAMES = {
    "convolution": "conv",
    "_convolution": "conv",
    "convolution_backward": "conv_backward",
    "addmm": "linear",
    "mm": "matmul",
    "bmm": "bmm",
    "baddbmm": "bmm",
    "_scaled_dot_product_efficient_attention": "attention",
    "_scaled_dot_product_flash_attention": "attention",
    "_scaled_dot_product_cudnn_attention": "attention",
}
# Ops whose outputs count as activations (fvcore's default set: convolutions and matmuls).
_ACTIVATION_OPS = {"convolution", "_convolution", "addmm", "mm", "bmm", "baddbmm"}


def _op_name(op: Any) -> str:
    name = getattr(op, "__name__", str(op)).split(".")[0]
    return _OP_NAMES.get(name, name)


def _run(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


class FlopCountAnalysis:
    """FLOPs of one forward pass of ``model`` on ``inputs``, by operator and by module.

    Args:
        model: the model; run as given (set ``eval()`` yourself for inference FLOPs).
        inputs: what the model takes: one argument, or a tuple of positional arguments
            (a detection model takes a list of dicts).

    Example::

        flops = FlopCountAnalysis(model, [{"image": img}])
        flops.total(), flops.by_operator()["conv"], flops.by_module()["backbone"]
    """

    def __init__(self, model: nn.Module, inputs: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"FlopCountAnalysis: model must be an nn.Module, got {type(model)}")
        self._model = model
        self._inputs = inputs
        self._counts: dict[str, dict[str, int]] | None = None

    def _analyze(self) -> dict[str, dict[str, int]]:
        if self._counts is None:
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                _run(self._model, self._inputs)
            counts: dict[str, dict[str, int]] = {}
            for module, ops in counter.get_flop_counts().items():
                # "Global" is everything; module names are prefixed with the root class name.
                key = "" if module == "Global" else module.partition(".")[2]
                if module != "Global" and "." not in module:
                    continue  # the root module itself: same as Global
                merged: dict[str, int] = defaultdict(int)
                for op, n in ops.items():
                    merged[_op_name(op)] += int(n) // 2  # multiply-adds
                counts[key] = dict(merged)
            self._counts = counts
        return self._counts

    def total(self, module_name: str = "") -> int:
        """Flops of the whole model, or of the submodule ``module_name`` (e.g. ``"backbone"``)."""
        counts = self._analyze()
        if module_name not in counts:
            return (
                0
                if module_name in dict(self._model.named_modules())
                else self._unknown(module_name)
            )
        return sum(counts[module_name].values())

    def _unknown(self, module_name: str) -> int:
        raise KeyError(f"FlopCountAnalysis: model has no submodule {module_name!r}")

    def by_operator(self, module_name: str = "") -> dict[str, int]:
        """operator name (``"conv"``, ``"linear"``, ...) -> flops, for the model or a submodule."""
        return dict(self._analyze().get(module_name, {}))

    def by_module(self) -> dict[str, int]:
        """module name -> flops (``""`` is the whole model)."""
        return {k: sum(v.values()) for k, v in self._analyze().items()}


def flop_count_operators(model: nn.Module, inputs: Any) -> dict[str, float]:
    """GFlops of one forward of ``model`` on ``inputs``, by operator (Detectron2's function).

    The model is run in eval mode (its mode is restored), as Detectron2 does for inference
    FLOPs.

    Args:
        model: e.g. a ``GeneralizedRCNN``.
        inputs: its input, e.g. ``[{"image": Tensor[3, H, W]}]``.

    Returns:
        operator name -> GFlops (one multiply-add = one flop).
    """
    was_training = model.training
    model.eval()
    try:
        ops = FlopCountAnalysis(model, inputs).by_operator()
    finally:
        model.train(was_training)
    return {k: v / 1e9 for k, v in ops.items()}


class _ActivationCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if name in _ACTIVATION_OPS and isinstance(out, torch.Tensor):
            self.counts[_OP_NAMES.get(name, name)] += out.numel()
        return out


def activation_count_operators(model: nn.Module, inputs: Any) -> dict[str, float]:
    """Millions of output elements of convolutions and matrix products in one forward of
    ``model`` (eval mode) on ``inputs``, by operator (fvcore's activation count).

    Returns:
        operator name -> mega-activations.
    """
    was_training = model.training
    model.eval()
    counter = _ActivationCounter()
    try:
        with counter, torch.no_grad():
            _run(model, inputs)
    finally:
        model.train(was_training)
    return {k: v / 1e6 for k, v in counter.counts.items()}


def parameter_count(model: nn.Module) -> dict[str, int]:
    """Number of parameters of every module prefix: ``""`` (all), ``"backbone"``,
    ``"backbone.res2"``, ... down to each parameter's full name. Shared parameters count once.
    """
    r: dict[str, int] = defaultdict(int)
    r[""] = 0
    for name, prm in model.named_parameters():
        size = prm.numel()
        parts = name.split(".")
        for k in range(len(parts) + 1):
            r[".".join(parts[:k])] += size
    return dict(r)


def parameter_count_table(model: nn.Module, max_depth: int = 3) -> str:
    """A table of parameter counts per module, down to ``max_depth`` levels of names.

    Returns:
        The table (``name | #elements or shape``) as a string.
    """
    if max_depth < 1:
        raise ValueError(f"parameter_count_table: max_depth must be >= 1, got {max_depth}")
    count = parameter_count(model)
    shapes = {k: tuple(v.shape) for k, v in model.named_parameters()}

    def fmt(n: int) -> str:
        if n > 1e8:
            return f"{n / 1e9:.1f}G"
        if n > 1e5:
            return f"{n / 1e6:.1f}M"
        if n > 1e2:
            return f"{n / 1e3:.1f}K"
        return str(n)

    rows: list[tuple[str, str]] = [("model", fmt(count.pop("", 0)))]
    for name in _ordered_names(count):
        depth = name.count(".") + 1
        if depth > max_depth:
            continue
        value = str(shapes[name]) if name in shapes else fmt(count[name])
        rows.append(("  " * (depth - 1) + name, value))
    return tabulate(rows, headers=["name", "#elements or shape"], tablefmt="pipe")


def _ordered_names(count: dict[str, int]) -> Iterable[str]:
    # Insertion order of parameter_count is the model's parameter order, parents first.
    return list(count)

"""Thin wrappers around ``torch.nn`` layers and functions.

They add what detection code needs on top of PyTorch: a ``Conv2d`` that carries its own norm and
activation, losses that return a differentiable zero on empty inputs (a batch with no foreground
proposals must still backpropagate), and helpers that keep shapes as tensors while tracing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "ConvTranspose2d",
    "Linear",
    "cat",
    "check_if_dynamo_compiling",
    "cross_entropy",
    "empty_input_loss_func_wrapper",
    "interpolate",
    "move_device_like",
    "nonzero_tuple",
    "shapes_to_tensor",
]


def check_if_dynamo_compiling() -> bool:
    """True while ``torch.compile`` (dynamo) is tracing the calling code, False otherwise."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    try:
        import torch._dynamo as dynamo

        return bool(dynamo.is_compiling())
    except (ImportError, AttributeError):  # pragma: no cover - very old torch
        return False


def shapes_to_tensor(
    x: Sequence[int | torch.Tensor], device: torch.device | None = None
) -> torch.Tensor:
    """Turn a list of sizes into an int64 tensor.

    While tracing, sizes obtained from ``tensor.shape`` are traced scalars; stacking them (instead
    of building a constant) keeps the exported graph valid for inputs of other sizes.

    Args:
        x: sizes, Python ints or 0-dim tensors.
        device: where to put the result.

    Returns:
        Tensor[len(x)] of dtype int64.
    """
    if torch.jit.is_scripting():
        return torch.as_tensor(x, device=device)
    if torch.jit.is_tracing():
        if not all(isinstance(t, torch.Tensor) for t in x):
            raise TypeError("shapes_to_tensor: while tracing, every size must be a Tensor")
        ret = torch.stack([t.reshape(()) for t in x])  # type: ignore[union-attr]
        if device is not None and device != ret.device:
            ret = ret.to(device=device)
        return ret
    return torch.as_tensor([int(t) for t in x], dtype=torch.int64, device=device)


def cat(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` that skips the copy when there is a single tensor.

    Args:
        tensors: non-empty list or tuple of tensors.
        dim: dimension to concatenate along.
    """
    if not isinstance(tensors, list | tuple):
        raise TypeError(f"cat: tensors must be a list or tuple, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError("cat: tensors is empty; nothing to concatenate")
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)


def empty_input_loss_func_wrapper(
    loss_func: Callable[..., torch.Tensor],
) -> Callable[..., torch.Tensor]:
    """Wrap a loss ``f(input, target, *, reduction, ...)`` to return ``0 * input.sum()`` for empty
    targets under ``reduction="mean"``, where PyTorch would return NaN."""

    @functools.wraps(loss_func)
    def wrapped_loss_func(
        input: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean", **kwargs: Any
    ) -> torch.Tensor:
        if target.numel() == 0 and reduction == "mean":
            return input.sum() * 0.0  # keeps the graph connected to input
        return loss_func(input, target, reduction=reduction, **kwargs)

    return wrapped_loss_func


cross_entropy = empty_input_loss_func_wrapper(F.cross_entropy)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with optional ``norm`` and ``activation`` applied after the convolution.

    Args:
        *args, **kwargs: as for ``torch.nn.Conv2d``.
        norm (nn.Module, optional): a normalization layer applied to the conv output.
        activation (callable(Tensor) -> Tensor, optional): applied after ``norm``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        norm = kwargs.pop("norm", None)
        activation = kwargs.pop("activation", None)
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A separate `if` on is_scripting() lets TorchScript skip the block entirely.
        if not torch.jit.is_scripting():  # noqa: SIM102
            if (
                not check_if_dynamo_compiling()
                and x.numel() == 0
                and self.training
                and isinstance(self.norm, nn.SyncBatchNorm)
            ):
                # SyncBatchNorm would hang or divide by zero on an empty batch.
                raise ValueError("Conv2d: SyncBatchNorm does not support empty inputs in training")
        x = self._conv_forward(x, self.weight, self.bias)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


# Current PyTorch handles empty batches in these, so no wrapper is needed.
ConvTranspose2d = nn.ConvTranspose2d
BatchNorm2d = nn.BatchNorm2d
interpolate = F.interpolate
Linear = nn.Linear


def nonzero_tuple(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x.nonzero(as_tuple=True)`` that also works for 0-dim tensors and in TorchScript."""
    if x.dim() == 0:
        return x.unsqueeze(0).nonzero().unbind(1)
    return x.nonzero().unbind(1)


@torch.jit.script_if_tracing
def move_device_like(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Move ``src`` to ``dst``'s device (a tracing-friendly ``src.to(dst.device)``: scripted while
    tracing, so the device is not recorded as a constant)."""
    return src.to(dst.device)

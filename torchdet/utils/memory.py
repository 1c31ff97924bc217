"""Recovering from CUDA out-of-memory errors."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["retry_if_cuda_oom"]


@contextmanager
def _ignore_torch_cuda_oom():
    """Swallow a CUDA out-of-memory error raised in the block; re-raise anything else."""
    try:
        yield
    except RuntimeError as e:
        if "CUDA out of memory" not in str(e) and not isinstance(e, torch.OutOfMemoryError):
            raise


def retry_if_cuda_oom(func: Callable) -> Callable:
    """Wrap ``func`` so that a CUDA out-of-memory error makes it retry: first after freeing the
    cache, then with its tensor arguments moved to CPU (outputs are then on CPU too).

    Args:
        func: a stateless function taking tensors (possibly inside lists/tuples).

    Returns:
        The wrapped function.
    """

    def maybe_to_cpu(x: Any) -> Any:
        try:
            like_gpu_tensor = x.device.type == "cuda" and hasattr(x, "to")
        except AttributeError:
            like_gpu_tensor = False
        return x.to(device="cpu") if like_gpu_tensor else x

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _ignore_torch_cuda_oom():
            return func(*args, **kwargs)
        torch.cuda.empty_cache()
        with _ignore_torch_cuda_oom():
            return func(*args, **kwargs)
        logging.getLogger(__name__).info(
            "Attempting to copy inputs of %s to CPU due to CUDA OOM", func
        )
        new_args = (maybe_to_cpu(x) for x in args)
        new_kwargs = {k: maybe_to_cpu(v) for k, v in kwargs.items()}
        return func(*new_args, **new_kwargs)

    return wrapped

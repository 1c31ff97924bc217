"""The meta-architecture registry and ``build_model``."""

from __future__ import annotations

import torch
from torch import nn

from torchdet.utils.registry import Registry

__all__ = ["META_ARCH_REGISTRY", "build_model"]

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """
Registry for meta-architectures, i.e. whole models; called as ``obj(cfg)``.
"""


def build_model(cfg) -> nn.Module:
    """Build the whole model named by ``cfg.MODEL.META_ARCHITECTURE``, on ``cfg.MODEL.DEVICE``.

    The weights are freshly initialised; load a checkpoint with ``DetectionCheckpointer``.
    """
    meta_arch = cfg.MODEL.META_ARCHITECTURE
    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as e:
        raise ValueError(f"Invalid MODEL.DEVICE {cfg.MODEL.DEVICE!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available here; "
            "set MODEL.DEVICE to 'cpu'"
        )
    model = META_ARCH_REGISTRY.get(meta_arch)(cfg)
    model.to(device)
    return model

"""Caffe2-style weight initialisations used by Detectron2 (``fvcore.nn.weight_init``)."""

from __future__ import annotations

from torch import nn

__all__ = ["c2_msra_fill", "c2_xavier_fill"]


def c2_msra_fill(module: nn.Module) -> None:
    """Caffe2 "MSRAFill": He normal init with ``fan_out`` for the weight, zero bias."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2 "XavierFill" (a uniform init with ``fan_in``), zero bias.

    Caffe2's XavierFill is ``kaiming_uniform_`` with ``a=1`` in PyTorch's terms.
    """
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)

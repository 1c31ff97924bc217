"""Normalization layers: frozen and synchronized batch norm, channel-first LayerNorm, and the
``get_norm`` factory that turns a config string (``"BN"``, ``"GN"``, ``"FrozenBN"``, ...) into a
layer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .wrappers import BatchNorm2d

__all__ = [
    "CycleBatchNormList",
    "FrozenBatchNorm2d",
    "LayerNorm",
    "NaiveSyncBatchNorm",
    "get_norm",
]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    Computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel of an
    ``(N, C, H, W)`` input. Nothing is a parameter, so an optimizer never touches it; pretrained
    backbones use it because batch statistics of detection-sized batches are too noisy.

    Args:
        num_features: number of channels C.
        eps: added to ``running_var``.
    """

    # Version 3 (Detectron2's): running_var is stored without eps folded in.
    _version = 3

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            # F.batch_norm in eval mode would still save buffers for backward; folding the
            # statistics into a scale and a shift is cheaper and gives the input its gradient.
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            bias = self.bias - self.running_mean * scale
            scale = scale.reshape(1, -1, 1, 1).to(x.dtype)
            bias = bias.reshape(1, -1, 1, 1).to(x.dtype)
            return x * scale + bias
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=False,
            eps=self.eps,
        )

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        # Checkpoints of BatchNorm layers folded into FrozenBN keep the counter; it has no meaning
        # here, so drop it instead of reporting an unexpected key.
        state_dict.pop(prefix + "num_batches_tracked", None)
        version = local_metadata.get("version")
        if version is None or version < 2:
            # Version 1 stored no running statistics: the affine parameters already included them.
            if prefix + "running_mean" not in state_dict:
                state_dict[prefix + "running_mean"] = torch.zeros_like(self.running_mean)
            if prefix + "running_var" not in state_dict:
                state_dict[prefix + "running_var"] = torch.ones_like(self.running_var)
        if version is not None and version < 3 and prefix + "running_var" in state_dict:
            # Version 2 folded eps into running_var; undo it (out of place: the dict may be shared).
            logging.getLogger(__name__).info(
                "FrozenBatchNorm %s is upgraded to version 3.", prefix.rstrip(".")
            )
            state_dict[prefix + "running_var"] = state_dict[prefix + "running_var"] - self.eps
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def __repr__(self) -> str:
        return f"FrozenBatchNorm2d(num_features={self.num_features}, eps={self.eps})"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm2d``/``SyncBatchNorm`` in ``module`` by a ``FrozenBatchNorm2d``
        with the same statistics.

        Args:
            module: a module, converted in place where it has BN children.

        Returns:
            The converted module: a new ``FrozenBatchNorm2d`` if ``module`` itself is a BN layer,
            otherwise ``module``.
        """
        bn_types = (nn.modules.batchnorm.BatchNorm2d, nn.modules.batchnorm.SyncBatchNorm)
        res = module
        if isinstance(module, bn_types):
            res = cls(module.num_features)
            if module.affine:
                res.weight.data = module.weight.data.clone().detach()
                res.bias.data = module.bias.data.clone().detach()
            if module.running_mean is not None:
                res.running_mean.data = module.running_mean.data
                res.running_var.data = module.running_var.data
            res.eps = module.eps
        else:
            for name, child in module.named_children():
                new_child = cls.convert_frozen_batchnorm(child)
                if new_child is not child:
                    res.add_module(name, new_child)
        return res

    @classmethod
    def convert_frozenbatchnorm2d_to_batchnorm2d(cls, module: nn.Module) -> nn.Module:
        """The inverse of :meth:`convert_frozen_batchnorm`: every ``FrozenBatchNorm2d`` becomes a
        ``BatchNorm2d`` with the same statistics and affine parameters."""
        res = module
        if isinstance(module, FrozenBatchNorm2d):
            res = nn.BatchNorm2d(module.num_features, module.eps)
            res.weight.data = module.weight.data.clone().detach()
            res.bias.data = module.bias.data.clone().detach()
            res.running_mean.data = module.running_mean.data.clone().detach()
            res.running_var.data = module.running_var.data.clone().detach()
        else:
            for name, child in module.named_children():
                new_child = cls.convert_frozenbatchnorm2d_to_batchnorm2d(child)
                if new_child is not child:
                    res.add_module(name, new_child)
        return res


class _DifferentiableAllReduce(torch.autograd.Function):
    """Sum over all ranks; the gradient is summed over ranks too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _world_size() -> int:
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


class NaiveSyncBatchNorm(BatchNorm2d):
    """Synchronized BatchNorm built from a plain all-reduce of per-channel mean and mean square.

    Works with any ``torch.distributed`` backend (gloo included) and with world size 1, where it is
    ordinary BatchNorm. With ``stats_mode=""`` every rank's statistics weigh the same (each rank
    must have a non-empty batch); with ``stats_mode="N"`` each rank weighs by its batch size, so
    empty batches are allowed.

    Args:
        *args, **kwargs: as for ``torch.nn.BatchNorm2d``.
        stats_mode: ``""`` or ``"N"``.
    """

    def __init__(self, *args: Any, stats_mode: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if stats_mode not in ("", "N"):
            raise ValueError(
                f"NaiveSyncBatchNorm: stats_mode must be '' or 'N', got {stats_mode!r}"
            )
        self._stats_mode = stats_mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if _world_size() == 1 or not self.training:
            return super().forward(input)

        batch, channels = input.shape[0], input.shape[1]
        half_input = input.dtype == torch.float16
        if half_input:
            input = input.float()  # mean of squares overflows in fp16
        mean = torch.mean(input, dim=[0, 2, 3])
        meansqr = torch.mean(input * input, dim=[0, 2, 3])

        if self._stats_mode == "":
            if batch == 0:
                raise ValueError('NaiveSyncBatchNorm(stats_mode="") does not support empty batches')
            vec = torch.cat([mean, meansqr], dim=0)
            vec = _DifferentiableAllReduce.apply(vec) * (1.0 / dist.get_world_size())
            mean, meansqr = torch.split(vec, channels)
            momentum = self.momentum
        else:
            if batch == 0:
                vec = torch.zeros([2 * channels + 1], device=mean.device, dtype=mean.dtype)
                vec = vec + input.sum()  # zero, but connects the input to the graph
            else:
                ones = torch.ones([1], device=mean.device, dtype=mean.dtype)
                vec = torch.cat([mean, meansqr, ones], dim=0)
            vec = _DifferentiableAllReduce.apply(vec * batch)
            total_batch = vec[-1].detach()
            momentum = total_batch.clamp(max=1) * self.momentum  # no update if all batches empty
            mean, meansqr, _ = torch.split(vec / total_batch.clamp(min=1), channels)

        var = meansqr - mean * mean
        invstd = torch.rsqrt(var + self.eps)
        scale = self.weight * invstd
        bias = self.bias - mean * scale
        scale = scale.reshape(1, -1, 1, 1)
        bias = bias.reshape(1, -1, 1, 1)

        self.running_mean += momentum * (mean.detach() - self.running_mean)
        self.running_var += momentum * (var.detach() - self.running_var)
        ret = input * scale + bias
        if half_input:
            ret = ret.half()
        return ret


class CycleBatchNormList(nn.ModuleList):
    """Several BatchNorm layers sharing one affine transform, used in turn on successive calls.

    Each call of ``forward`` uses the next layer's statistics (cycling), which lets one module see
    inputs from different domains (e.g. test-time augmentations) with separate statistics.

    Args:
        length: number of BN layers.
        bn_class: the BN class to instantiate.
        **kwargs: arguments of ``bn_class`` (``num_features`` at least); ``affine`` controls the
            shared weight and bias.
    """

    def __init__(self, length: int, bn_class: type[nn.Module] = nn.BatchNorm2d, **kwargs: Any):
        self._affine = kwargs.pop("affine", True)
        super().__init__([bn_class(**kwargs, affine=False) for _ in range(length)])
        if self._affine:
            channels = self[0].num_features
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        self._pos = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ret = self[self._pos](x)
        self._pos = (self._pos + 1) % len(self)
        if self._affine:
            return ret * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        return ret

    def extra_repr(self) -> str:
        return f"affine={self._affine}"


class LayerNorm(nn.Module):
    """LayerNorm over the channel dimension of an ``(N, C, H, W)`` tensor (as in ConvNeXt).

    Args:
        normalized_shape: number of channels C.
        eps: added to the variance.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(32, channels)


def _naive_sync_bn_n(channels: int) -> nn.Module:
    return NaiveSyncBatchNorm(channels, stats_mode="N")


_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "BN": BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": _group_norm,
    "nnSyncBN": nn.SyncBatchNorm,
    "naiveSyncBN": NaiveSyncBatchNorm,
    "naiveSyncBN_N": _naive_sync_bn_n,
    "LN": LayerNorm,
}


def get_norm(norm: str | Callable[[int], nn.Module] | None, out_channels: int) -> nn.Module | None:
    """Build a normalization layer.

    Args:
        norm: one of ``"BN"``, ``"SyncBN"``, ``"FrozenBN"``, ``"GN"`` (32 groups), ``"nnSyncBN"``,
            ``"naiveSyncBN"``, ``"naiveSyncBN_N"``, ``"LN"``; ``""`` or ``None`` for no norm; or a
            callable taking the channel count and returning a module.
        out_channels: number of channels.

    Returns:
        The layer, or None when ``norm`` is empty.
    """
    if norm is None:
        return None
    if isinstance(norm, str):
        if len(norm) == 0:
            return None
        if norm not in _NORMS:
            raise KeyError(
                f"get_norm: unknown norm {norm!r}; valid choices are {sorted(_NORMS)}, '' or None, "
                "or a callable taking the number of channels"
            )
        norm = _NORMS[norm]
    if not callable(norm):
        raise TypeError(
            f"get_norm: norm must be a str, a callable or None, got {type(norm).__name__}"
        )
    return norm(out_channels)

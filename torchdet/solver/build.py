"""Build the optimizer and LR scheduler from a config, as Detectron2 does.

Parameter groups: norm layers and biases may get their own weight decay and LR factor, and
groups with identical hyper-parameters are merged so the optimizer stays fast (``foreach``).
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torchdet.config import CfgNode
from torchdet.layers.batch_norm import FrozenBatchNorm2d, LayerNorm, NaiveSyncBatchNorm

from .lr_scheduler import (
    CosineParamScheduler,
    LRMultiplier,
    MultiStepParamScheduler,
    StepWithFixedGammaParamScheduler,
    WarmupParamScheduler,
)

__all__ = [
    "build_optimizer",
    "build_lr_scheduler",
    "get_default_optimizer_params",
    "maybe_add_gradient_clipping",
    "clip_gradients",
]

logger = logging.getLogger(__name__)

_NORM_TYPES = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.InstanceNorm1d,
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
    FrozenBatchNorm2d,
    LayerNorm,
    NaiveSyncBatchNorm,
)


def get_default_optimizer_params(
    model: torch.nn.Module,
    base_lr: float | None = None,
    weight_decay: float | None = None,
    weight_decay_norm: float | None = None,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: float | None = None,
    lr_factor_func: Callable[[str], float] | None = None,
    overrides: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups with per-parameter hyper-parameters.

    Args:
        model: the model; each trainable parameter appears once (shared ones are deduplicated).
        base_lr, weight_decay: defaults for every group (``None`` leaves the optimizer's).
        weight_decay_norm: weight decay for parameters of normalization layers.
        bias_lr_factor, weight_decay_bias: LR multiplier and weight decay for parameters named
            ``bias``.
        lr_factor_func: maps a full parameter name to an LR multiplier (layer-wise decay).
        overrides: ``{param_name: {hyperparam: value}}`` keyed by the parameter's own name
            (e.g. ``"bias"``, ``"embedding"``).
    """
    overrides = dict(overrides or {})
    defaults: dict[str, float] = {}
    if base_lr is not None:
        defaults["lr"] = base_lr
    if weight_decay is not None:
        defaults["weight_decay"] = weight_decay
    bias_overrides: dict[str, float] = {}
    if bias_lr_factor != 1.0:
        if base_lr is None:
            raise ValueError("bias_lr_factor requires base_lr")
        bias_overrides["lr"] = base_lr * bias_lr_factor
    if weight_decay_bias is not None:
        bias_overrides["weight_decay"] = weight_decay_bias
    if bias_overrides:
        if "bias" in overrides:
            raise ValueError("Conflicting overrides for 'bias'")
        overrides["bias"] = bias_overrides
    if lr_factor_func is not None and base_lr is None:
        raise ValueError("lr_factor_func requires base_lr")

    params: list[dict[str, Any]] = []
    seen: set[torch.nn.Parameter] = set()
    for module_name, module in model.named_modules():
        for param_name, value in module.named_parameters(recurse=False):
            if not value.requires_grad or value in seen:
                continue
            seen.add(value)
            hyperparams = copy.copy(defaults)
            if isinstance(module, _NORM_TYPES) and weight_decay_norm is not None:
                hyperparams["weight_decay"] = weight_decay_norm
            if lr_factor_func is not None:
                hyperparams["lr"] *= lr_factor_func(f"{module_name}.{param_name}")
            hyperparams.update(overrides.get(param_name, {}))
            params.append({"params": [value], **hyperparams})
    return _reduce_param_groups(params)


def _reduce_param_groups(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge groups with identical hyper-parameters, keeping the parameters' order."""
    groups: dict[tuple, list[torch.nn.Parameter]] = defaultdict(list)
    for item in params:
        key = tuple(sorted((k, v) for k, v in item.items() if k != "params"))
        groups[key].extend(item["params"])
    return [{"params": ps, **dict(key)} for key, ps in groups.items()]


def clip_gradients(
    params: Iterable[torch.nn.Parameter], clip_type: str, clip_value: float, norm_type: float = 2.0
) -> None:
    """Clip gradients in place: ``"value"`` (elementwise) or ``"norm"`` (joint norm of params)."""
    params = [p for p in params if p.grad is not None]
    if clip_type not in ("value", "norm", "full_model"):
        raise ValueError(
            f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be 'value', 'norm' or 'full_model', "
            f"got {clip_type!r}"
        )
    if not params:
        return
    if clip_type == "value":
        torch.nn.utils.clip_grad_value_(params, clip_value)
    else:
        torch.nn.utils.clip_grad_norm_(params, clip_value, norm_type)


def maybe_add_gradient_clipping(
    cfg: CfgNode, optimizer: type[torch.optim.Optimizer]
) -> type[torch.optim.Optimizer]:
    """Return an optimizer class that clips gradients before each step, if the config asks.

    ``"value"`` and ``"norm"`` clip each parameter on its own (Detectron2's behaviour);
    ``"full_model"`` clips the joint norm of all parameters.
    """
    clip_cfg = cfg.SOLVER.CLIP_GRADIENTS
    if not clip_cfg.ENABLED:
        return optimizer
    if isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError("maybe_add_gradient_clipping takes an optimizer class, not an instance")
    clip_type, clip_value, norm_type = clip_cfg.CLIP_TYPE, clip_cfg.CLIP_VALUE, clip_cfg.NORM_TYPE
    clip_gradients([], clip_type, clip_value, norm_type)  # validates the clip type early

    def step(self, closure=None):
        all_params = itertools.chain(*[g["params"] for g in self.param_groups])
        if clip_type == "full_model":
            clip_gradients(all_params, clip_type, clip_value, norm_type)
        else:
            for p in all_params:
                clip_gradients([p], clip_type, clip_value, norm_type)
        return optimizer.step(self, closure)

    return type(optimizer.__name__ + "WithGradientClip", (optimizer,), {"step": step})


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW from ``cfg.SOLVER``, with per-parameter groups.

    ``SOLVER.OPTIMIZER`` (a torchdet extension; absent in Detectron2 configs) selects
    ``"SGD"`` (default) or ``"AdamW"``.
    """
    solver = cfg.SOLVER
    params = get_default_optimizer_params(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        bias_lr_factor=solver.BIAS_LR_FACTOR,
        weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
    )
    name = solver.get("OPTIMIZER", "SGD")
    if name == "SGD":
        cls = maybe_add_gradient_clipping(cfg, torch.optim.SGD)
        return cls(
            params,
            lr=solver.BASE_LR,
            momentum=solver.MOMENTUM,
            nesterov=solver.NESTEROV,
            weight_decay=solver.WEIGHT_DECAY,
            foreach=True,
        )
    if name == "AdamW":
        cls = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
        return cls(params, lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY, foreach=True)
    raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'AdamW', got {name!r}")


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """The LR schedule of ``cfg.SOLVER.LR_SCHEDULER_NAME`` with its warmup."""
    solver = cfg.SOLVER
    name = solver.LR_SCHEDULER_NAME
    if name == "WarmupMultiStepLR":
        steps = [x for x in solver.STEPS if x <= solver.MAX_ITER]
        if len(steps) != len(solver.STEPS):
            logger.warning(
                "SOLVER.STEPS contains values larger than SOLVER.MAX_ITER; they are ignored."
            )
        sched = MultiStepParamScheduler(
            values=[solver.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=solver.MAX_ITER,
        )
    elif name == "WarmupCosineLR":
        sched = CosineParamScheduler(1.0, solver.BASE_LR_END / solver.BASE_LR)
    elif name == "WarmupStepWithFixedGammaLR":
        sched = StepWithFixedGammaParamScheduler(
            base_value=1.0,
            gamma=solver.GAMMA,
            num_decays=solver.NUM_DECAYS,
            num_updates=solver.MAX_ITER,
        )
    else:
        raise ValueError(
            f"Unknown SOLVER.LR_SCHEDULER_NAME {name!r}; choose WarmupMultiStepLR, "
            "WarmupCosineLR or WarmupStepWithFixedGammaLR"
        )
    sched = WarmupParamScheduler(
        sched,
        solver.WARMUP_FACTOR,
        min(solver.WARMUP_ITERS / solver.MAX_ITER, 1.0),
        solver.WARMUP_METHOD,
        solver.RESCALE_INTERVAL,
    )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=solver.MAX_ITER)

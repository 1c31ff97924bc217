"""DeepLab's "poly" learning-rate schedule with warmup (``SOLVER.LR_SCHEDULER_NAME:
WarmupPolyLR``)."""

from __future__ import annotations

import math

import torch

from torchdet.config import CfgNode
from torchdet.solver import build_lr_scheduler as build_core_lr_scheduler

__all__ = ["WarmupPolyLR", "build_lr_scheduler"]


def _warmup_factor(method: str, it: int, warmup_iters: int, warmup_factor: float) -> float:
    if it >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = it / warmup_iters
        return warmup_factor * (1 - alpha) + alpha
    raise ValueError(f"SOLVER.WARMUP_METHOD must be 'constant' or 'linear', got {method!r}")


class WarmupPolyLR(torch.optim.lr_scheduler.LRScheduler):
    """``base_lr * warmup * (1 - iter / max_iters) ** power``, floored at
    ``base_lr * constant_ending`` after the warmup when ``constant_ending > 0``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
        power: float = 0.9,
        constant_ending: float = 0.0,
    ) -> None:
        if max_iters <= 0:
            raise ValueError(f"WarmupPolyLR: max_iters must be positive, got {max_iters}")
        self.max_iters = max_iters
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        self.power = power
        self.constant_ending = constant_ending
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        warmup = _warmup_factor(
            self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor
        )
        poly = math.pow(max(1.0 - self.last_epoch / self.max_iters, 0.0), self.power)
        if self.constant_ending > 0 and warmup == 1.0 and poly < self.constant_ending:
            return [base_lr * self.constant_ending for base_lr in self.base_lrs]
        return [base_lr * warmup * poly for base_lr in self.base_lrs]


def build_lr_scheduler(
    cfg: CfgNode, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """``WarmupPolyLR`` for ``SOLVER.LR_SCHEDULER_NAME: WarmupPolyLR``, else the core's."""
    solver = cfg.SOLVER
    if solver.LR_SCHEDULER_NAME != "WarmupPolyLR":
        return build_core_lr_scheduler(cfg, optimizer)
    return WarmupPolyLR(
        optimizer,
        solver.MAX_ITER,
        warmup_factor=solver.WARMUP_FACTOR,
        warmup_iters=solver.WARMUP_ITERS,
        warmup_method=solver.WARMUP_METHOD,
        power=solver.POLY_LR_POWER,
        constant_ending=solver.POLY_LR_CONSTANT_ENDING,
    )

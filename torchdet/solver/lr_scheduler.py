"""Learning-rate schedules: parameter schedulers over training progress, and the LR wrapper.

A *parameter scheduler* maps training progress ``where`` in ``[0, 1]`` to a multiplier. They
compose (``CompositeParamScheduler``) and a warmup is a composite of a short ramp and the main
schedule. ``LRMultiplier`` turns one into a ``torch.optim.lr_scheduler.LRScheduler`` that multiplies
each group's base LR at every iteration. The semantics (and the ``1e-6`` epsilon when turning
progress into a step count) follow fvcore, which Detectron2's schedules are built on, so a
Detectron2 config gives the same LR at every iteration.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch

__all__ = [
    "ParamScheduler",
    "ConstantParamScheduler",
    "LinearParamScheduler",
    "CosineParamScheduler",
    "ExponentialParamScheduler",
    "MultiStepParamScheduler",
    "StepParamScheduler",
    "StepWithFixedGammaParamScheduler",
    "CompositeParamScheduler",
    "WarmupParamScheduler",
    "LRMultiplier",
    "WarmupMultiStepLR",
    "WarmupCosineLR",
]

_WHERE_EPSILON = 1e-6


class ParamScheduler:
    """Maps training progress ``where`` in ``[0, 1)`` to a value."""

    def __call__(self, where: float) -> float:
        raise NotImplementedError

    @staticmethod
    def _check_where(where: float) -> None:
        if not 0.0 <= where <= 1.0:
            raise ValueError(f"where must be in [0, 1], got {where}")


class ConstantParamScheduler(ParamScheduler):
    def __init__(self, value: float) -> None:
        self._value = value

    def __call__(self, where: float) -> float:
        self._check_where(where)
        return self._value


class LinearParamScheduler(ParamScheduler):
    """Linear from ``start_value`` at 0 to ``end_value`` at 1."""

    def __init__(self, start_value: float, end_value: float) -> None:
        self._start, self._end = start_value, end_value

    def __call__(self, where: float) -> float:
        self._check_where(where)
        return self._start + where * (self._end - self._start)


class CosineParamScheduler(ParamScheduler):
    """Half a cosine from ``start_value`` at 0 to ``end_value`` at 1."""

    def __init__(self, start_value: float, end_value: float) -> None:
        self._start, self._end = start_value, end_value

    def __call__(self, where: float) -> float:
        self._check_where(where)
        return self._end + 0.5 * (self._start - self._end) * (1 + math.cos(math.pi * where))


class ExponentialParamScheduler(ParamScheduler):
    """``start_value * decay ** where``."""

    def __init__(self, start_value: float, decay: float) -> None:
        self._start, self._decay = start_value, decay

    def __call__(self, where: float) -> float:
        self._check_where(where)
        return self._start * self._decay**where


class MultiStepParamScheduler(ParamScheduler):
    """Piecewise constant: ``values[i]`` between ``milestones[i-1]`` and ``milestones[i]``.

    Args:
        values: ``len(milestones) + 1`` values.
        num_updates: total number of updates; ``where`` is turned into ``int(where * num_updates)``.
        milestones: increasing update indices at which the value changes. Defaults to equal
            intervals.
    """

    def __init__(
        self,
        values: Sequence[float],
        num_updates: int | None = None,
        milestones: Sequence[int] | None = None,
    ) -> None:
        if num_updates is None and milestones is None:
            raise ValueError("MultiStepParamScheduler needs num_updates or milestones")
        if num_updates is None and len(milestones) == len(values):
            # fvcore's form: the last milestone is the total number of updates.
            num_updates, milestones = milestones[-1], milestones[:-1]
        if milestones is None:
            step = num_updates // len(values)
            milestones = [step * (i + 1) for i in range(len(values) - 1)]
        if len(milestones) != len(values) - 1:
            raise ValueError(
                f"MultiStepParamScheduler: {len(values)} values need {len(values) - 1} "
                f"milestones, got {len(milestones)}"
            )
        if any(b <= a for a, b in zip(milestones[:-1], milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {list(milestones)}")
        if num_updates is None:
            num_updates = milestones[-1] + 1 if milestones else 1
        if milestones and milestones[-1] >= num_updates:
            raise ValueError(
                f"last milestone {milestones[-1]} must be smaller than num_updates {num_updates}"
            )
        self._values = list(values)
        self._milestones = list(milestones)
        self._num_updates = num_updates

    def __call__(self, where: float) -> float:
        self._check_where(where)
        step = int((where + _WHERE_EPSILON) * self._num_updates)
        return self._values[bisect.bisect_right(self._milestones, step)]


class StepParamScheduler(ParamScheduler):
    """``values`` spread over equal fractions of training."""

    def __init__(self, num_updates: int, values: Sequence[float]) -> None:
        if num_updates <= 0 or not values:
            raise ValueError("StepParamScheduler needs num_updates > 0 and at least one value")
        self._values = list(values)

    def __call__(self, where: float) -> float:
        self._check_where(where)
        index = min(int((where + _WHERE_EPSILON) * len(self._values)), len(self._values) - 1)
        return self._values[index]


class StepWithFixedGammaParamScheduler(StepParamScheduler):
    """``base_value * gamma**k`` over ``num_decays + 1`` equal fractions of training."""

    def __init__(self, base_value: float, num_decays: int, gamma: float, num_updates: int) -> None:
        super().__init__(num_updates, [base_value * gamma**i for i in range(num_decays + 1)])


class CompositeParamScheduler(ParamScheduler):
    """Schedulers one after another, each over a ``lengths[i]`` fraction of training.

    ``interval_scaling[i]`` is ``"rescaled"`` (the scheduler sees progress within its own
    interval, from 0 to 1) or ``"fixed"`` (it sees the global progress).
    """

    def __init__(
        self,
        schedulers: Sequence[ParamScheduler],
        lengths: Sequence[float],
        interval_scaling: Sequence[str],
    ) -> None:
        if not len(schedulers) == len(lengths) == len(interval_scaling):
            raise ValueError("schedulers, lengths and interval_scaling must have the same length")
        if not math.isclose(sum(lengths), 1.0, abs_tol=1e-3):
            raise ValueError(f"lengths must sum to 1, got {list(lengths)}")
        for s in interval_scaling:
            if s not in ("rescaled", "fixed"):
                raise ValueError(f"interval_scaling must be 'rescaled' or 'fixed', got {s!r}")
        self._schedulers = list(schedulers)
        self._lengths = list(lengths)
        self._scaling = list(interval_scaling)

    def __call__(self, where: float) -> float:
        self._check_where(where)
        start = 0.0
        for i, length in enumerate(self._lengths):
            end = start + length
            if where + _WHERE_EPSILON <= end or i == len(self._lengths) - 1:
                break
            start = end
        scheduler = self._schedulers[i]
        if self._scaling[i] == "rescaled":
            local = (where - start) / self._lengths[i] if self._lengths[i] > 0 else 0.0
            return scheduler(min(max(local, 0.0), 1.0))
        return scheduler(where)


class WarmupParamScheduler(CompositeParamScheduler):
    """A warmup ramp over the first ``warmup_length`` of training, then ``scheduler``.

    Args:
        scheduler: the main schedule.
        warmup_factor: the ramp starts at ``warmup_factor * scheduler(0)``.
        warmup_length: fraction of training the ramp lasts.
        warmup_method: ``"linear"`` (ramp to ``scheduler(warmup_length)``) or ``"constant"``.
        rescale_interval: whether ``scheduler`` sees progress rescaled to the rest of training.
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
    ) -> None:
        end_value = scheduler(warmup_length) if not rescale_interval else scheduler(0.0)
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "constant":
            warmup: ParamScheduler = ConstantParamScheduler(start_value)
        elif warmup_method == "linear":
            warmup = LinearParamScheduler(start_value, end_value)
        else:
            raise ValueError(f"Unknown warmup method {warmup_method!r}; use 'linear' or 'constant'")
        super().__init__(
            [warmup, scheduler],
            lengths=[warmup_length, 1 - warmup_length],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
        )


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """Sets each group's LR to ``base_lr * multiplier(iter / max_iter)``; step once per iter."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ) -> None:
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"multiplier must be a ParamScheduler, got {type(multiplier).__name__}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> dict:
        # The multiplier is rebuilt from the config; only the position matters on resume.
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self) -> list[float]:
        where = min(self.last_epoch / self._max_iter, 1.0)
        multiplier = self._multiplier(where)
        return [base_lr * multiplier for base_lr in self.base_lrs]


def WarmupMultiStepLR(
    optimizer: torch.optim.Optimizer,
    milestones: Sequence[int],
    gamma: float = 0.1,
    warmup_factor: float = 0.001,
    warmup_iters: int = 1000,
    warmup_method: str = "linear",
    max_iter: int | None = None,
) -> LRMultiplier:
    """Step decay by ``gamma`` at each milestone after a warmup (Detectron2's default schedule)."""
    max_iter = max_iter if max_iter is not None else (max(milestones) + 1 if milestones else 1)
    sched = MultiStepParamScheduler(
        [gamma**k for k in range(len(milestones) + 1)], num_updates=max_iter, milestones=milestones
    )
    sched = WarmupParamScheduler(
        sched, warmup_factor, min(warmup_iters / max_iter, 1.0), warmup_method
    )
    return LRMultiplier(optimizer, sched, max_iter)


def WarmupCosineLR(
    optimizer: torch.optim.Optimizer,
    max_iters: int,
    warmup_factor: float = 0.001,
    warmup_iters: int = 1000,
    warmup_method: str = "linear",
    end_value: float = 0.0,
) -> LRMultiplier:
    """Cosine decay to ``end_value`` (a fraction of the base LR) after a warmup."""
    sched = WarmupParamScheduler(
        CosineParamScheduler(1.0, end_value),
        warmup_factor,
        min(warmup_iters / max_iters, 1.0),
        warmup_method,
    )
    return LRMultiplier(optimizer, sched, max_iters)

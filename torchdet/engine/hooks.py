"""Hooks for the training loop: timing, writing metrics, checkpointing, LR scheduling,
evaluation, profiling, precise BN statistics, validation loss and early stopping.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import math
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

import torchdet.utils.comm as comm
from torchdet.checkpoint import Checkpointer
from torchdet.checkpoint import PeriodicCheckpointer as _PeriodicCheckpointer
from torchdet.solver import LRMultiplier
from torchdet.utils.events import EventWriter
from torchdet.utils.file_io import PathManager

from .train_loop import HookBase, preserve_rng_states

__all__ = [
    "AutogradProfiler",
    "BestCheckpointer",
    "CallbackHook",
    "EarlyStopping",
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
    "TorchMemoryStats",
    "TorchProfiler",
    "ValidationLoss",
    "get_bn_modules",
    "update_bn_stats",
]

logger = logging.getLogger(__name__)


class CallbackHook(HookBase):
    """A hook made of functions, each called with the trainer."""

    def __init__(
        self,
        *,
        before_train: Callable | None = None,
        after_train: Callable | None = None,
        before_step: Callable | None = None,
        after_step: Callable | None = None,
    ) -> None:
        self._before_train = before_train
        self._before_step = before_step
        self._after_step = after_step
        self._after_train = after_train

    def before_train(self) -> None:
        if self._before_train:
            self._before_train(self.trainer)

    def after_train(self) -> None:
        if self._after_train:
            self._after_train(self.trainer)
        # The functions may hold references to the trainer: drop them once training is over.
        del self._before_train, self._after_train
        del self._before_step, self._after_step

    def before_step(self) -> None:
        if self._before_step:
            self._before_step(self.trainer)

    def after_step(self) -> None:
        if self._after_step:
            self._after_step(self.trainer)


class IterationTimer(HookBase):
    """Log the time of each iteration (``time``, hooks before it included) and the total.

    Register it first, so that its ``before_step`` runs before the other hooks'.
    """

    def __init__(self, warmup_iter: int = 3) -> None:
        """
        Args:
            warmup_iter: iterations left out of the total time (they are slower).
        """
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._start_time = 0.0
        self._total_time = 0.0  # seconds of timed (post-warmup) iterations

    def before_train(self) -> None:
        self._start_time = time.perf_counter()
        self._total_time = 0.0

    def after_train(self) -> None:
        total_time = time.perf_counter() - self._start_time
        num_iter = self.trainer.storage.iter + 1 - self.trainer.start_iter - self._warmup_iter
        if num_iter > 0 and self._total_time > 0:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                num_iter,
                str(datetime.timedelta(seconds=int(self._total_time))),
                self._total_time / num_iter,
            )
        logger.info(
            "Total training time: %s (%s on hooks)",
            str(datetime.timedelta(seconds=int(total_time))),
            str(datetime.timedelta(seconds=int(max(total_time - self._total_time, 0)))),
        )

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        # +1: the iteration that just finished counts.
        iter_done = self.trainer.storage.iter - self.trainer.start_iter + 1
        if iter_done >= self._warmup_iter:
            sec = time.perf_counter() - self._step_start
            self._total_time += sec
            self.trainer.storage.put_scalars(time=sec)
        else:
            self._start_time = time.perf_counter()


class PeriodicWriter(HookBase):
    """Run ``EventWriter``s every ``period`` iterations, at the last one and after training."""

    def __init__(self, writers: Iterable[EventWriter], period: int = 20) -> None:
        self._writers = list(writers)
        for w in self._writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"PeriodicWriter: {type(w).__name__} is not an EventWriter")
        if int(period) <= 0:
            raise ValueError(f"PeriodicWriter: period must be > 0, got {period}")
        self._period = int(period)

    def after_step(self) -> None:
        if (self.trainer.iter + 1) % self._period == 0 or (
            self.trainer.iter == self.trainer.max_iter - 1
        ):
            for writer in self._writers:
                writer.write()

    def after_train(self) -> None:
        for writer in self._writers:
            # Write what the last iterations or after_train hooks (e.g. a final evaluation)
            # logged, then close.
            writer.write()
            writer.close()


class PeriodicCheckpointer(_PeriodicCheckpointer, HookBase):
    """``torchdet.checkpoint.PeriodicCheckpointer`` as a hook: saves every ``period``
    iterations and at the last one. The checkpoint holds what the checkpointer's
    checkpointables give; ``DefaultTrainer`` adds the trainer itself (iteration, optimizer,
    scheduler, generator states, data position).
    """

    def before_train(self) -> None:
        self.max_iter = self.trainer.max_iter

    def _due(self, iteration: int) -> bool:
        return (iteration + 1) % self.period == 0 or (
            self.max_iter is not None and iteration >= self.max_iter - 1
        )

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if self._due(iteration):
            prepare = getattr(self.trainer, "prepare_for_checkpoint", None)
            if prepare is not None:
                prepare()  # a collective: every rank gathers the generator states
        self.step(iteration)


class BestCheckpointer(HookBase):
    """Save ``<file_prefix>.pth`` whenever the validation metric improves (checked every
    ``eval_period`` iterations and after training). Register it after the ``EvalHook``.
    """

    def __init__(
        self,
        eval_period: int,
        checkpointer: Checkpointer,
        val_metric: str,
        mode: str = "max",
        file_prefix: str = "model_best",
    ) -> None:
        """
        Args:
            eval_period: the ``EvalHook``'s period.
            checkpointer: writes the file.
            val_metric: the metric's name in the event storage, e.g. ``"bbox/AP50"``.
            mode: ``"max"`` or ``"min"``: whether larger values are better.
            file_prefix: the file name without extension.
        """
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpointer: mode must be 'max' or 'min', got {mode!r}")
        self._period = eval_period
        self._val_metric = val_metric
        self._compare = operator.gt if mode == "max" else operator.lt
        self._checkpointer = checkpointer
        self._file_prefix = file_prefix
        self.best_metric: float | None = None
        self.best_iter: int | None = None

    def _update_best(self, val: float, iteration: int) -> bool:
        if math.isnan(val) or math.isinf(val):
            return False
        self.best_metric = val
        self.best_iter = iteration
        return True

    def _best_checking(self) -> None:
        metric_tuple = self.trainer.storage.latest().get(self._val_metric)
        if metric_tuple is None:
            logger.warning(
                "Given val metric %s does not seem to be computed/stored; not checkpointing.",
                self._val_metric,
            )
            return
        latest_metric, metric_iter = metric_tuple
        better = self.best_metric is None or self._compare(latest_metric, self.best_metric)
        if better and self._update_best(latest_metric, metric_iter):
            additional_state = {"iteration": metric_iter}
            self._checkpointer.save(self._file_prefix, **additional_state)
            logger.info(
                "Saved best model as latest eval score for %s is %.5f at iteration %d",
                self._val_metric,
                latest_metric,
                metric_iter,
            )

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._best_checking()

    def after_train(self) -> None:
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self._best_checking()

    def state_dict(self) -> dict[str, Any]:
        if self.best_metric is None:
            return {}
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_metric = state_dict.get("best_metric")
        self.best_iter = state_dict.get("best_iter")


class LRScheduler(HookBase):
    """Log the learning rate (``lr``) and step the scheduler after every iteration."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | Any | None = None,
    ) -> None:
        """
        Args:
            optimizer: default the trainer's.
            scheduler: a torch LR scheduler, or a ``ParamScheduler`` (wrapped in an
                ``LRMultiplier`` over the training length); default the trainer's.
        """
        self._optimizer = optimizer
        self._scheduler = scheduler

    def before_train(self) -> None:
        self._optimizer = self._optimizer or self.trainer.optimizer
        if self._scheduler is None:
            self._scheduler = self.trainer.scheduler
        if not isinstance(self._scheduler, torch.optim.lr_scheduler.LRScheduler):
            # A ParamScheduler (multiplier as a function of the training progress).
            self._scheduler = LRMultiplier(
                self._optimizer,
                self._scheduler,
                self.trainer.max_iter,
                last_iter=self.trainer.iter - 1,
            )
        self._best_param_group_id = LRScheduler.get_best_param_group_id(self._optimizer)

    @staticmethod
    def get_best_param_group_id(optimizer: torch.optim.Optimizer) -> int:
        """The param group whose LR is logged: the largest one, else the most common LR."""
        largest_group = max(len(g["params"]) for g in optimizer.param_groups)
        if largest_group == 1:
            # Groups of single parameters (e.g. per-parameter weight decay): the most common LR
            # is the "base" one.
            lr_count = Counter(g["lr"] for g in optimizer.param_groups)
            lr = lr_count.most_common()[0][0]
            for i, g in enumerate(optimizer.param_groups):
                if g["lr"] == lr:
                    return i
        for i, g in enumerate(optimizer.param_groups):
            if len(g["params"]) == largest_group:
                return i
        return 0

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._best_param_group_id]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()

    @property
    def scheduler(self):
        return self._scheduler or self.trainer.scheduler

    def state_dict(self) -> dict[str, Any]:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):
            logger.info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)


class TorchProfiler(HookBase):
    """Profile chosen iterations with ``torch.profiler`` and write a Chrome trace per iteration
    (``<output_dir>/profiler-trace-iter<N>.json``; open it in chrome://tracing or Perfetto).
    """

    def __init__(
        self,
        enable_predicate: Callable[[Any], bool],
        output_dir: str,
        *,
        activities: Iterable | None = None,
        save_tensorboard: bool = False,
    ) -> None:
        """
        Args:
            enable_predicate: trainer -> whether to profile its current iteration.
            output_dir: where traces are written.
            activities: ``torch.profiler.ProfilerActivity`` values; default CPU (+ CUDA if
                available).
            save_tensorboard: also write a TensorBoard trace under ``output_dir/log``.
        """
        self._enable_predicate = enable_predicate
        self._activities = activities
        self._output_dir = output_dir
        self._save_tensorboard = save_tensorboard
        self._profiler: Any = None

    def before_step(self) -> None:
        if not self._enable_predicate(self.trainer):
            self._profiler = None
            return
        on_trace_ready = None
        if self._save_tensorboard:
            on_trace_ready = torch.profiler.tensorboard_trace_handler(
                os.path.join(
                    self._output_dir, "log", f"profiler-tensorboard-iter{self.trainer.iter}"
                ),
                f"worker{comm.get_rank()}",
            )
        self._profiler = torch.profiler.profile(
            activities=self._activities,
            on_trace_ready=on_trace_ready,
            record_shapes=True,
            profile_memory=True,
            with_stack=False,
        )
        self._profiler.__enter__()

    def after_step(self) -> None:
        if self._profiler is None:
            return
        self._profiler.__exit__(None, None, None)
        if not self._save_tensorboard:
            PathManager.mkdirs(self._output_dir)
            out_file = os.path.join(
                self._output_dir, f"profiler-trace-iter{self.trainer.iter}.json"
            )
            self._profiler.export_chrome_trace(out_file)
        self._profiler = None


class AutogradProfiler(TorchProfiler):
    """``TorchProfiler`` through ``torch.autograd.profiler.profile`` (Detectron2's older hook).

    Args:
        enable_predicate: trainer -> whether to profile its current iteration.
        output_dir: where the Chrome traces are written.
        use_cuda: also record CUDA kernels.
    """

    def __init__(
        self, enable_predicate: Callable[[Any], bool], output_dir: str, *, use_cuda: bool = True
    ) -> None:
        super().__init__(enable_predicate, output_dir)
        self._use_cuda = use_cuda and torch.cuda.is_available()

    def before_step(self) -> None:
        if self._enable_predicate(self.trainer):
            self._profiler = torch.autograd.profiler.profile(
                use_device="cuda" if self._use_cuda else None
            )
            self._profiler.__enter__()
        else:
            self._profiler = None


class EvalHook(HookBase):
    """Run an evaluation function every ``eval_period`` iterations and after training, and log
    its (flattened) results as scalars. The evaluation does not disturb the training's random
    generators, so a resumed run stays exact.
    """

    def __init__(
        self, eval_period: int, eval_function: Callable[[], Any], eval_after_train: bool = True
    ) -> None:
        """
        Args:
            eval_period: evaluate every this many iterations (0: only after training).
            eval_function: takes nothing, returns a nested dict of numbers (or nothing).
            eval_after_train: also evaluate after the last iteration.
        """
        self._period = eval_period
        self._func = eval_function
        self._eval_after_train = eval_after_train

    def _do_eval(self) -> None:
        with preserve_rng_states():
            results = self._func()
        if results:
            if not isinstance(results, Mapping):
                raise TypeError(f"Eval function must return a dict. Got {results} instead.")
            flattened_results = _flatten_results_dict(results)
            for k, v in flattened_results.items():
                try:
                    float(v)
                except Exception as e:
                    raise ValueError(
                        "[EvalHook] eval_function should return a nested dict of float. "
                        f"Got '{k}: {v}' instead."
                    ) from e
            self.trainer.storage.put_scalars(**flattened_results, smoothing_hint=False)
        # Evaluation may not finish at the same time on every rank; wait for all of them.
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        # The last iteration's evaluation is done by after_train.
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._do_eval()

    def after_train(self) -> None:
        # This hook also runs when training failed; evaluate only a finished run.
        if self._eval_after_train and self.trainer.iter + 1 >= self.trainer.max_iter:
            self._do_eval()
        # The function may hold large objects (model, data): free them.
        del self._func


def _flatten_results_dict(results: Mapping[str, Any]) -> dict[str, Any]:
    """``{"bbox": {"AP": 1}}`` -> ``{"bbox/AP": 1}``."""
    r: dict[str, Any] = {}
    for k, v in results.items():
        if isinstance(v, Mapping):
            for kk, vv in _flatten_results_dict(v).items():
                r[f"{k}/{kk}"] = vv
        else:
            r[k] = v
    return r


# ---------------------------------------------------------------------------- precise BN
BN_MODULE_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def get_bn_modules(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm modules of ``model`` that are training (and so update statistics)."""
    return [m for m in model.modules() if m.training and isinstance(m, BN_MODULE_TYPES)]


@torch.no_grad()
def update_bn_stats(model: nn.Module, data_loader: Iterable, num_iters: int = 200) -> None:
    """Recompute the running mean/var of every training BatchNorm as the exact average over
    ``num_iters`` batches (rather than the exponential moving average of training).

    Args:
        model: in training mode.
        data_loader: yields inputs of ``model``.
        num_iters: number of batches.

    Raises:
        ValueError: if the loader has fewer than ``num_iters`` batches.
    """
    bn_layers = get_bn_modules(model)
    if not bn_layers:
        return
    momentum_actual = [bn.momentum for bn in bn_layers]
    for bn in bn_layers:
        bn.momentum = 1.0  # running stats = this batch's stats; averaged by hand below
    running_mean = [torch.zeros_like(bn.running_mean) for bn in bn_layers]
    running_var = [torch.zeros_like(bn.running_var) for bn in bn_layers]
    ind = -1
    for ind, inputs in enumerate(itertools.islice(data_loader, num_iters)):
        model(inputs)
        for i, bn in enumerate(bn_layers):
            # Running average of the per-batch statistics.
            running_mean[i] += (bn.running_mean - running_mean[i]) / (ind + 1)
            running_var[i] += (bn.running_var - running_var[i]) / (ind + 1)
    if ind != num_iters - 1:
        raise ValueError(
            f"update_bn_stats is meant to run {num_iters} iterations, "
            f"but the data loader stops at {ind + 1} iterations."
        )
    for i, bn in enumerate(bn_layers):
        bn.running_mean = running_mean[i]
        bn.running_var = running_var[i]
        bn.momentum = momentum_actual[i]


class PreciseBN(HookBase):
    """Recompute BatchNorm statistics precisely every ``period`` iterations and after training
    (run it before the ``EvalHook``). A no-op when the model has no training BatchNorm.
    """

    def __init__(self, period: int, model: nn.Module, data_loader: Iterable, num_iter: int) -> None:
        """
        Args:
            period: recompute every this many iterations (0: only after training).
            model: the model (in training mode).
            data_loader: an iterable of training batches; iterated only when needed.
            num_iter: batches to average over.
        """
        self._disabled = len(get_bn_modules(model)) == 0
        if self._disabled:
            logger.info("PreciseBN is disabled because the model has no BatchNorm in training.")
            return
        self._model = model
        self._data_loader = data_loader
        self._num_iter = num_iter
        self._period = period
        self._data_iter: Iterator | None = None

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        is_final = next_iter == self.trainer.max_iter
        if is_final or (self._period > 0 and next_iter % self._period == 0):
            self.update_stats()

    def update_stats(self) -> None:
        """Recompute the statistics now."""
        if self._disabled:
            return
        if self._data_iter is None:
            self._data_iter = iter(self._data_loader)

        def data_loader() -> Iterator:
            for num_iter in itertools.count(1):
                if num_iter % 100 == 0:
                    logger.info(
                        "Running precise-BN ... %d/%d iterations.", num_iter, self._num_iter
                    )
                yield next(self._data_iter)

        with preserve_rng_states(), torch.no_grad():
            logger.info("Running precise-BN for %d iterations...  ", self._num_iter)
            update_bn_stats(self._model, data_loader(), self._num_iter)


class TorchMemoryStats(HookBase):
    """Log CUDA memory statistics (``max_reserved_mem``, ``max_allocated_mem`` in MB, ...)
    every ``period`` iterations, at most ``max_runs`` times; a no-op without CUDA.
    """

    def __init__(self, period: int = 20, max_runs: int = 10) -> None:
        self._period = period
        self._max_runs = max_runs
        self._runs = 0

    def after_step(self) -> None:
        if self._runs > self._max_runs or not torch.cuda.is_available():
            return
        if (self.trainer.iter + 1) % self._period == 0 or (
            self.trainer.iter == self.trainer.max_iter - 1
        ):
            mb = 1024.0 * 1024.0
            stats = {
                "max_reserved_mem": torch.cuda.max_memory_reserved() / mb,
                "reserved_mem": torch.cuda.memory_reserved() / mb,
                "max_allocated_mem": torch.cuda.max_memory_allocated() / mb,
                "allocated_mem": torch.cuda.memory_allocated() / mb,
            }
            self.trainer.storage.put_scalars(**stats)
            self._runs += 1
            if self._runs == self._max_runs:
                logger.info("\n%s", torch.cuda.memory_summary())
            torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------- beyond Detectron2
class ValidationLoss(HookBase):
    """Every ``period`` iterations, compute the training losses (no gradient) on
    ``num_batches`` batches of a validation loader, averaged over batches and ranks, and log
    them as ``val_<loss name>`` and ``val_total_loss``.

    The model stays in training mode (detection models only return losses in it), so its
    BatchNorm statistics would move: use it with frozen BN or GroupNorm. It leaves the
    training's random generators untouched, so resuming stays exact.
    """

    def __init__(self, period: int, data_loader: Iterable, num_batches: int = 1) -> None:
        """
        Args:
            period: run every this many iterations (and at the last one).
            data_loader: yields validation batches (with annotations); iterated cyclically.
            num_batches: batches per evaluation.
        """
        if int(period) <= 0 or int(num_batches) <= 0:
            raise ValueError(
                f"ValidationLoss: period and num_batches must be > 0, got {period}, {num_batches}"
            )
        self._period = int(period)
        self._data_loader = data_loader
        self._num_batches = int(num_batches)
        self._data_iter: Iterator | None = None

    def _next(self) -> Any:
        if self._data_iter is None:
            self._data_iter = iter(self._data_loader)
        try:
            return next(self._data_iter)
        except StopIteration:  # a finite loader: start it again
            self._data_iter = iter(self._data_loader)
            return next(self._data_iter)

    def compute(self) -> dict[str, float]:
        """The averaged validation losses now (``val_`` names), on every rank."""
        model = self.trainer.model
        sums: dict[str, torch.Tensor] = {}
        with preserve_rng_states(), torch.no_grad():
            for _ in range(self._num_batches):
                loss_dict = model(self._next())
                for k, v in loss_dict.items():
                    sums[k] = sums.get(k, 0) + v.detach().float()
        means = {k: v / self._num_batches for k, v in sums.items()}
        ranks = comm.all_gather({k: float(v) for k, v in means.items()})
        out = {f"val_{k}": sum(r[k] for r in ranks) / len(ranks) for k in means}
        out["val_total_loss"] = sum(out.values())
        return out

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            losses = self.compute()
            if comm.is_main_process():
                self.trainer.storage.put_scalars(**losses)


class EarlyStopping(HookBase):
    """Stop training when a metric has not improved for ``patience`` checks.

    The metric is read from the event storage (e.g. ``"bbox/AP"`` logged by an ``EvalHook``,
    or ``"val_total_loss"`` from ``ValidationLoss``) whenever a new value of it appears; rank 0
    decides and every rank stops at the same iteration. Register it after the hook that logs
    the metric.
    """

    def __init__(
        self, metric: str, patience: int, mode: str = "min", min_delta: float = 0.0
    ) -> None:
        """
        Args:
            metric: the metric's name in the event storage.
            patience: number of new values without improvement tolerated before stopping.
            mode: ``"min"`` (lower is better, e.g. a loss) or ``"max"`` (e.g. AP).
            min_delta: an improvement must beat the best value by more than this.
        """
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if int(patience) < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.metric = metric
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_iter: int | None = None
        self.num_bad = 0
        self._last_seen_iter: int | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _decide(self) -> bool:
        latest = self.trainer.storage.latest().get(self.metric)
        if latest is None:
            return False
        value, itr = latest
        if itr == self._last_seen_iter:
            return False  # no new value since the last check
        self._last_seen_iter = itr
        if not math.isnan(value) and self._improved(value):
            self.best, self.best_iter, self.num_bad = float(value), int(itr), 0
            return False
        self.num_bad += 1
        logger.info(
            "EarlyStopping: %s=%.5g did not improve on %.5g (iteration %s) for %d/%d checks",
            self.metric,
            value,
            self.best if self.best is not None else float("nan"),
            self.best_iter,
            self.num_bad,
            self.patience,
        )
        return self.num_bad > self.patience

    def after_step(self) -> None:
        stop = self._decide() if comm.is_main_process() else False
        if comm.get_world_size() > 1:
            stop = bool(comm.all_gather(stop)[0])
        if stop:
            logger.info(
                "EarlyStopping: stopping at iteration %d; best %s=%.5g at iteration %s",
                self.trainer.iter,
                self.metric,
                self.best,
                self.best_iter,
            )
            self.trainer.request_stop()

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_iter": self.best_iter,
            "num_bad": self.num_bad,
            "last_seen_iter": self._last_seen_iter,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_iter = state_dict.get("best_iter")
        self.num_bad = int(state_dict.get("num_bad", 0))
        self._last_seen_iter = state_dict.get("last_seen_iter")

"""The training loop: ``TrainerBase`` (iterations + hooks), ``SimpleTrainer`` (one optimizer
step per batch) and ``AMPTrainer`` (mixed precision).

Beyond Detectron2, the trainer's ``state_dict`` holds everything needed to resume *exactly*:
every random generator's state (python, numpy, torch, CUDA; all ranks') and the position of the
training sampler, so a resumed run continues the same data stream with the same randomness.
"""

from __future__ import annotations

import logging
import random
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import torchdet.utils.comm as comm
from torchdet.utils.events import EventStorage, get_event_storage

__all__ = [
    "AMPTrainer",
    "HookBase",
    "SimpleTrainer",
    "TrainerBase",
    "get_rng_states",
    "preserve_rng_states",
    "set_rng_states",
]

logger = logging.getLogger(__name__)


class HookBase:
    """Base class of the hooks that a ``TrainerBase`` calls around training and each step::

        hook.before_train()
        for iter in range(start_iter, max_iter):
            hook.before_step()
            trainer.run_step()
            hook.after_step()
        iter += 1
        hook.after_train()

    A hook reaches the trainer through ``self.trainer`` (a weak proxy set by
    ``register_hooks``). A hook with state to checkpoint returns it from ``state_dict``.
    """

    trainer: TrainerBase

    def before_train(self) -> None:
        """Called before the first iteration."""

    def after_train(self) -> None:
        """Called after the last iteration (also when training raised)."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_backward(self) -> None:
        """Called after the backward pass of each iteration (trainers that support it)."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def state_dict(self) -> dict[str, Any]:
        """The hook's state to checkpoint; empty when it has none."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class TrainerBase:
    """Runs iterations ``start_iter .. max_iter - 1`` and calls the hooks around them.

    Attributes:
        iter: the current iteration.
        start_iter: the first iteration of :meth:`train`.
        max_iter: one past the last iteration.
        storage: the ``EventStorage`` opened during training.
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: EventStorage
        self._stop_requested = False

    def request_stop(self) -> None:
        """Stop training after the current iteration (its after_step hooks still run).

        Every rank must request it at the same iteration (see ``hooks.EarlyStopping``).
        """
        self._stop_requested = True

    def register_hooks(self, hooks: Iterable[HookBase | None]) -> None:
        """Append hooks (None entries are skipped); they run in registration order."""
        hooks = [h for h in hooks if h is not None]
        for h in hooks:
            if not isinstance(h, HookBase):
                raise TypeError(f"register_hooks: {type(h).__name__} is not a HookBase")
            # A weak proxy: hooks hold the trainer and the trainer holds hooks; a strong
            # reference would make a cycle that keeps both (and the model) alive.
            h.trainer = weakref.proxy(self)
        self._hooks.extend(hooks)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter .. max_iter - 1``."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self._stop_requested = False
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    if self._stop_requested:
                        logger.info("Training stopped early after iteration %d", self.iter)
                        break
                # After a complete run ``iter == max_iter``; hooks' after_train see that.
                self.iter += 1
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        # Metrics logged during this step are recorded at this iteration.
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_backward(self) -> None:
        for h in self._hooks:
            h.after_backward()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        ret: dict[str, Any] = {"iteration": self.iter}
        hooks_state = {}
        for h in self._hooks:
            sd = h.state_dict()
            if sd:
                name = type(h).__qualname__
                if name in hooks_state:
                    continue  # two hooks of a type cannot be told apart on loading
                hooks_state[name] = sd
        if hooks_state:
            ret["hooks"] = hooks_state
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "iteration" not in state_dict:
            raise KeyError(f"Trainer state has no 'iteration' (keys: {sorted(state_dict)})")
        self.iter = int(state_dict["iteration"])
        for key, value in state_dict.get("hooks", {}).items():
            for h in self._hooks:
                if type(h).__qualname__ == key:
                    h.load_state_dict(value)
                    break
            else:
                logger.warning("Cannot find the hook '%s', its state_dict is ignored.", key)


# ---------------------------------------------------------------------------- exact resume
def get_rng_states() -> dict[str, Any]:
    """The states of the python, numpy, torch and CUDA generators, as tensors and ints (so a
    checkpoint holding them loads with ``torch.load(weights_only=True)``).
    """
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": {
            "version": py_version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    missing = {"python", "numpy", "torch"} - set(states)
    if missing:
        raise KeyError(f"set_rng_states: missing generators {sorted(missing)}")
    py = states["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = states["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = states["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning(
                "Checkpoint has CUDA RNG states of %d devices, this machine has %d: not restored",
                len(cuda_states),
                torch.cuda.device_count(),
            )


@contextmanager
def preserve_rng_states() -> Iterator[None]:
    """Run a block without disturbing the python, numpy, torch and CUDA generators (e.g. an
    evaluation in the middle of training, so that resuming stays exact).
    """
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)


def _walk_loader(data_loader: Any, max_depth: int = 6) -> Iterator[Any]:
    """The objects a loader is built from, breadth first: torchdet's loader wrappers keep them
    in ``dataset``/``loader``/``sampler`` attributes (``DataLoader -> ToIterableDataset ->
    sampler``, ``AspectRatioGroupedDataset -> DataLoader -> ...``).
    """
    todo = [(data_loader, 0)]
    seen = set()
    while todo:
        obj, depth = todo.pop(0)
        if id(obj) in seen or depth > max_depth:
            continue
        seen.add(id(obj))
        yield obj
        for attr in ("sampler", "dataset", "loader", "_dataset", "_loader"):
            child = getattr(obj, attr, None)
            if child is not None and not isinstance(child, list | dict | str):
                todo.append((child, depth + 1))


def find_resumable_sampler(data_loader: Any) -> Any | None:
    """The sampler with ``state_dict``/``load_state_dict`` that feeds ``data_loader``, if any."""
    for obj in _walk_loader(data_loader):
        if isinstance(obj, torch.utils.data.Sampler) and hasattr(obj, "load_state_dict"):
            return obj
    return None


def _is_aspect_grouped(data_loader: Any) -> bool:
    return any(type(o).__name__ == "AspectRatioGroupedDataset" for o in _walk_loader(data_loader))


def _find_grouper(data_loader: Any) -> Any | None:
    """The resumable aspect-ratio grouping stage of ``data_loader`` (its buckets' state)."""
    for o in _walk_loader(data_loader):
        if type(o).__name__ == "AspectRatioGroupedDataset" and hasattr(o, "load_state_dict"):
            return o
    return None


def _reseeds_per_item(data_loader: Any) -> bool:
    """Whether the items' augmentation is seeded by stream position (workers are then exact)."""
    return any(getattr(o, "reseeds_per_item", False) is True for o in _walk_loader(data_loader))


def _num_workers(data_loader: Any) -> int:
    return max(
        (
            o.num_workers
            for o in _walk_loader(data_loader)
            if isinstance(o, torch.utils.data.DataLoader)
        ),
        default=0,
    )


class SimpleTrainer(TrainerBase):
    """One optimizer step per batch: ``loss = sum(model(batch).values())``; ``backward``;
    ``optimizer.step()``. The model returns a dict of scalar losses in training mode.

    A non-finite loss raises ``FloatingPointError`` naming the iteration and the offending loss
    terms, before any weight is updated. Its ``state_dict`` (through ``DefaultTrainer``'s
    checkpointer) holds the optimizer, the random generators of every rank and the sampler's
    position in the data stream (and the aspect-ratio grouping buckets' state): a resumed run
    is bitwise identical to an uninterrupted one when the loader is torchdet's (its items'
    augmentation is seeded by stream position, so DataLoader workers and grouping keep it exact).
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
        async_write_metrics: bool = False,
    ) -> None:
        """
        Args:
            model: returns a dict of losses in training mode.
            data_loader: an iterable of batches (infinite, or at least ``max_iter`` long).
            optimizer: a torch optimizer.
            gather_metric_period: gather and log metrics every this many iterations.
            zero_grad_before_forward: zero the gradients before the forward pass (so the
                forward may add to them), rather than just before backward.
            async_write_metrics: accepted for Detectron2 compatibility; metrics are written
                synchronously (their cost is a few scalars per iteration).
        """
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"SimpleTrainer: model must be an nn.Module, got {type(model)}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"SimpleTrainer: optimizer must be an Optimizer, got {type(optimizer)}")
        if int(gather_metric_period) <= 0:
            raise ValueError(f"gather_metric_period must be > 0, got {gather_metric_period}")
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj: Iterator | None = None
        self.optimizer = optimizer
        self.gather_metric_period = int(gather_metric_period)
        self.zero_grad_before_forward = zero_grad_before_forward
        self.async_write_metrics = async_write_metrics
        self._sampler = find_resumable_sampler(data_loader)
        self._sampler_start = self._sampler.state_dict()["num_yielded"] if self._sampler else 0
        self._samples_consumed = 0
        self._all_rng_states: list | None = None
        self._all_grouping_states: list | None = None

    @property
    def _data_loader_iter(self) -> Iterator:
        # Created on first use, after resume_or_load has moved the sampler.
        if self._data_loader_iter_obj is None:
            # A DataLoader draws its workers' base seed from torch's generator when its
            # iterator is made; keep that draw out of the training stream, or a resumed run
            # (whose iterator is made at another iteration) would shift the stream by one draw.
            with preserve_rng_states():
                self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def reset_data_loader(self, data_loader_builder=None) -> None:
        """Drop the current data iterator (and optionally the loader) to start a new one."""
        del self._data_loader_iter_obj
        self._data_loader_iter_obj = None
        if data_loader_builder is not None:
            self.data_loader = data_loader_builder()
            self._sampler = find_resumable_sampler(self.data_loader)
            self._sampler_start = self._sampler.state_dict()["num_yielded"] if self._sampler else 0
            self._samples_consumed = 0

    def _next_batch(self) -> Any:
        self._all_rng_states = None  # a new iteration: states gathered before are stale
        self._all_grouping_states = None
        data = next(self._data_loader_iter)
        if isinstance(data, list | tuple):
            self._samples_consumed += len(data)
        return data

    def run_step(self) -> None:
        """One iteration: load a batch, forward, backward, optimizer step."""
        if not self.model.training:
            raise RuntimeError("SimpleTrainer: the model was switched to eval mode!")
        start = time.perf_counter()
        data = self._next_batch()
        data_time = time.perf_counter() - start

        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        loss_dict = self.model(data)
        losses = self._sum_losses(loss_dict)
        self._check_finite(loss_dict, losses)
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()
        self._write_metrics_if_due(loss_dict, data_time)
        self.optimizer.step()

    @staticmethod
    def _sum_losses(loss_dict: Any) -> torch.Tensor:
        if isinstance(loss_dict, torch.Tensor):
            return loss_dict
        if not isinstance(loss_dict, Mapping) or not loss_dict:
            raise TypeError(
                "SimpleTrainer: the model must return a non-empty dict of losses in training "
                f"mode, got {type(loss_dict).__name__}"
            )
        return sum(loss_dict.values())

    def _check_finite(self, loss_dict: Any, losses: torch.Tensor) -> None:
        """Raise ``FloatingPointError`` on every rank if any rank's loss is not finite."""
        bad = (~torch.isfinite(losses.detach())).float().reshape(1)
        if comm.get_world_size() > 1:
            # All ranks must stop together: one raising alone would leave the others blocked in
            # the next collective.
            flag = bad.cpu() if dist.get_backend() == "gloo" else bad
            dist.all_reduce(flag)
            bad = flag
        if bad.item() == 0:
            return
        if isinstance(loss_dict, Mapping):
            terms = {k: float(v.detach()) for k, v in loss_dict.items()}
        else:
            terms = {"loss": float(losses.detach())}
        not_finite = {k: v for k, v in terms.items() if not np.isfinite(v)}
        where = f" on rank {comm.get_rank()}" if not_finite else " on another rank"
        raise FloatingPointError(
            f"Loss became infinite or NaN at iteration={self.iter}{where}! "
            f"Non-finite terms: {not_finite}; loss_dict = {terms}"
        )

    def _write_metrics_if_due(self, loss_dict: Any, data_time: float, prefix: str = "") -> None:
        if (self.iter + 1) % self.gather_metric_period == 0:
            if not isinstance(loss_dict, Mapping):
                loss_dict = {"total_loss": loss_dict}
            self._write_metrics(loss_dict, data_time, prefix)

    def _write_metrics(
        self,
        loss_dict: Mapping[str, torch.Tensor],
        data_time: float,
        prefix: str = "",
        iter: int | None = None,  # noqa: A002 - Detectron2's name
    ) -> None:
        SimpleTrainer.write_metrics(
            loss_dict, data_time, self.iter if iter is None else iter, prefix
        )

    @staticmethod
    def write_metrics(
        loss_dict: Mapping[str, torch.Tensor],
        data_time: float,
        cur_iter: int,
        prefix: str = "",
    ) -> None:
        """Gather the losses and data time of all ranks and log them on rank 0.

        Args:
            loss_dict: name -> scalar loss tensor.
            data_time: seconds spent waiting for the batch.
            cur_iter: the iteration they belong to.
            prefix: prefix of the logged names (e.g. ``"val_"``).
        """
        metrics_dict = {k: float(v.detach().cpu().item()) for k, v in loss_dict.items()}
        metrics_dict["data_time"] = data_time
        all_metrics_dict = comm.gather(metrics_dict)
        if not comm.is_main_process():
            return
        storage = get_event_storage()
        # The slowest rank's data time shows whether data loading holds training back.
        storage.put_scalar("data_time", max(x.pop("data_time") for x in all_metrics_dict))
        metrics = {k: float(np.mean([x[k] for x in all_metrics_dict])) for k in all_metrics_dict[0]}
        total_losses_reduced = sum(metrics.values())
        if not np.isfinite(total_losses_reduced):
            raise FloatingPointError(
                f"Loss became infinite or NaN at iteration={cur_iter}!\nloss_dict = {metrics}"
            )
        storage.put_scalar(f"{prefix}total_loss", total_losses_reduced)
        if len(metrics) > 1:
            storage.put_scalars(**metrics)

    # ------------------------------------------------------------------ resume state
    def prepare_for_checkpoint(self) -> None:
        """Collect every rank's generator states on every rank (a collective: all ranks call
        it before a checkpoint is saved; only rank 0 then writes them).
        """
        self._all_rng_states = comm.all_gather(get_rng_states())
        grouper = _find_grouper(self.data_loader)
        if grouper is not None:  # each rank's buckets hold its own images
            self._all_grouping_states = comm.all_gather(grouper.state_dict())

    def data_position(self) -> int:
        """Number of this rank's samples consumed from the sampler's stream so far."""
        return self._sampler_start + self._samples_consumed

    def state_dict(self) -> dict[str, Any]:
        ret = super().state_dict()
        ret["optimizer"] = self.optimizer.state_dict()
        # Gathered by prepare_for_checkpoint in this iteration (kept for every save of it).
        rng = self._all_rng_states
        ret["rng_states"] = rng if rng is not None else [get_rng_states()]
        if self._sampler is not None:
            ret["data_loader"] = {
                "sampler": {
                    "seed": self._sampler.state_dict()["seed"],
                    "num_yielded": self.data_position(),
                }
            }
            grouper = _find_grouper(self.data_loader)
            if grouper is not None:  # images waiting in the grouping buckets, per rank
                grouping = self._all_grouping_states
                ret["data_loader"]["grouping"] = grouping or [grouper.state_dict()]
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "optimizer" in state_dict:
            self.optimizer.load_state_dict(state_dict["optimizer"])
        rng_states = state_dict.get("rng_states")
        if rng_states:
            rank = comm.get_rank()
            if rank < len(rng_states):
                set_rng_states(rng_states[rank])
            else:
                logger.warning(
                    "Checkpoint has generator states of %d ranks; rank %d keeps its own",
                    len(rng_states),
                    rank,
                )
        loader_state = state_dict.get("data_loader")
        if loader_state is not None and self._sampler is not None:
            self._sampler.load_state_dict(loader_state["sampler"])
            self._sampler_start = int(loader_state["sampler"]["num_yielded"])
            self._samples_consumed = 0
            if self._data_loader_iter_obj is not None:  # restart the stream at the position
                self._data_loader_iter_obj = None
            grouper = _find_grouper(self.data_loader)
            grouping = loader_state.get("grouping") or []
            if grouper is not None and comm.get_rank() < len(grouping):
                grouper.load_state_dict(grouping[comm.get_rank()])
            elif _is_aspect_grouped(self.data_loader):
                logger.warning(
                    "Resuming a data loader with aspect-ratio grouping from a checkpoint without "
                    "its grouping state: images waiting in the grouping buffers at the "
                    "checkpoint are skipped, so the data stream is not "
                    "exactly that of an uninterrupted run (DATALOADER.ASPECT_RATIO_GROUPING=False "
                    "makes it exact)."
                )
            if _num_workers(self.data_loader) > 0 and not _reseeds_per_item(self.data_loader):
                logger.warning(
                    "Resuming a data loader with DataLoader workers: their augmentation random "
                    "generators are not in the checkpoint (and several workers batch their own "
                    "share of the stream), so the data are not exactly those of an "
                    "uninterrupted run (DATALOADER.NUM_WORKERS=0 makes it exact)."
                )
        elif loader_state is not None:
            logger.warning("Checkpoint has a data loader position but the loader has no sampler")


class AMPTrainer(SimpleTrainer):
    """``SimpleTrainer`` with automatic mixed precision: fp16 with a ``GradScaler`` on CUDA,
    bf16 (no scaler needed) on CPU.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
        grad_scaler: torch.amp.GradScaler | None = None,
        precision: torch.dtype | None = None,
        log_grad_scaler: bool = False,
        async_write_metrics: bool = False,
    ) -> None:
        """
        Args:
            model, data_loader, optimizer, gather_metric_period, zero_grad_before_forward,
            async_write_metrics: see ``SimpleTrainer``.
            grad_scaler: the scaler for fp16 (default a new ``GradScaler`` on CUDA).
            precision: autocast dtype; default ``torch.float16`` on CUDA, ``torch.bfloat16``
                on CPU.
            log_grad_scaler: log the scaler's scale every iteration.
        """
        super().__init__(
            model,
            data_loader,
            optimizer,
            gather_metric_period,
            zero_grad_before_forward,
            async_write_metrics,
        )
        param = next(iter(model.parameters()), None)
        self.device_type = param.device.type if param is not None else "cpu"
        if precision is None:
            precision = torch.float16 if self.device_type == "cuda" else torch.bfloat16
        if precision not in (torch.float16, torch.bfloat16):
            raise ValueError(f"AMPTrainer: precision must be float16 or bfloat16, got {precision}")
        if isinstance(model, nn.DataParallel) and len(model.device_ids) > 1:
            raise ValueError("AMPTrainer does not support single-process multi-device training")
        if grad_scaler is None and precision == torch.float16:
            grad_scaler = torch.amp.GradScaler(self.device_type)
        self.grad_scaler = grad_scaler
        self.precision = precision
        self.log_grad_scaler = log_grad_scaler

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError("AMPTrainer: the model was switched to eval mode!")
        start = time.perf_counter()
        data = self._next_batch()
        data_time = time.perf_counter() - start

        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast(self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
            losses = self._sum_losses(loss_dict)
        self._check_finite(loss_dict, losses)
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
        else:
            losses.backward()
        if self.log_grad_scaler and self.grad_scaler is not None:
            self.storage.put_scalar("[metric]grad_scaler", self.grad_scaler.get_scale())
        self.after_backward()
        self._write_metrics_if_due(loss_dict, data_time)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])

"""The evaluator interface and the loop that runs a model over a dataset and feeds an evaluator."""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict, abc
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "inference_context",
    "inference_on_dataset",
]

logger = logging.getLogger(__name__)


def _comm() -> Any:
    """``torchdet.utils.comm`` when it exists; otherwise a single-process stand-in."""
    try:
        from torchdet.utils import comm
    except ImportError:  # pragma: no cover - depends on the engine package's progress
        from types import SimpleNamespace

        return SimpleNamespace(
            get_world_size=lambda: 1,
            get_rank=lambda: 0,
            is_main_process=lambda: True,
            synchronize=lambda: None,
            gather=lambda data, dst=0: [data],
            all_gather=lambda data: [data],
        )
    return comm


class DatasetEvaluator:
    """Base class for a dataset evaluator.

    :func:`inference_on_dataset` calls :meth:`reset` once, then :meth:`process` with every batch
    of inputs and model outputs, then :meth:`evaluate`.
    """

    def reset(self) -> None:
        """Prepare for a new round of evaluation."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Accumulate one batch.

        Args:
            inputs: the inputs given to the model (a list of dataset dicts).
            outputs: the model's outputs for them, one per input.
        """

    def evaluate(self) -> dict | None:
        """Evaluate everything processed since :meth:`reset`.

        Returns:
            ``{task: {metric: value}}`` on the main process (``None`` or ``{}`` elsewhere).
        """
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Runs several evaluators together and merges their results (task names must differ)."""

    def __init__(self, evaluators: list[DatasetEvaluator]):
        super().__init__()
        for i, ev in enumerate(evaluators):
            if not isinstance(ev, DatasetEvaluator):
                raise TypeError(
                    f"DatasetEvaluators: evaluators[{i}] is a {type(ev).__name__}, "
                    "expected a DatasetEvaluator"
                )
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> OrderedDict:
        results: OrderedDict = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if _comm().is_main_process() and result is not None:
                for k, v in result.items():
                    if k in results:
                        raise KeyError(
                            f"DatasetEvaluators: two evaluators returned results for task {k!r}"
                        )
                    results[k] = v
        return results


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its previous training mode."""
    training_mode = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training_mode)


def _progress(iterable: Iterable, total: int | None) -> Iterable:
    """A tqdm progress bar (with ETA) on the main process, when tqdm is installed."""
    if not _comm().is_main_process():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but keep the loop usable
        return iterable
    return tqdm(iterable, total=total, desc="inference", mininterval=1.0, leave=False)


def inference_on_dataset(
    model: nn.Module | Any,
    data_loader: Iterable,
    evaluator: DatasetEvaluator | list[DatasetEvaluator] | None,
) -> dict:
    """Run ``model`` on every batch of ``data_loader`` and evaluate with ``evaluator``.

    The model runs under ``torch.inference_mode`` and, if it is an ``nn.Module``, in eval mode
    (its training mode is restored afterwards). Timing excludes the first
    ``min(5, len(data_loader) - 1)`` warm-up iterations.

    Args:
        model: a callable taking a batch (list of dicts) and returning a list of outputs.
        data_loader: an iterable of batches; ``len`` gives the progress total when available.
        evaluator: a :class:`DatasetEvaluator`, a list of them, or None (only benchmark).

    Returns:
        The evaluator's results (an empty dict when ``evaluator`` is None or on other ranks).
    """
    if not callable(model):
        raise TypeError(f"inference_on_dataset: model must be callable, got {type(model)}")
    num_devices = _comm().get_world_size()
    try:
        total: int | None = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    logger.info("Start inference on %s batches", total if total is not None else "?")

    if evaluator is None:
        evaluator = DatasetEvaluators([])
    if isinstance(evaluator, abc.MutableSequence):
        evaluator = DatasetEvaluators(list(evaluator))
    if not isinstance(evaluator, DatasetEvaluator):
        raise TypeError(
            f"inference_on_dataset: evaluator must be a DatasetEvaluator, a list of them or "
            f"None, got {type(evaluator).__name__}"
        )
    evaluator.reset()

    num_warmup = min(5, total - 1) if total else 5
    start_time = time.perf_counter()
    total_data_time = total_compute_time = total_eval_time = 0.0
    num_images = 0
    idx = -1
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.inference_mode())
        start_data_time = time.perf_counter()
        for idx, inputs in enumerate(_progress(data_loader, total)):
            total_data_time += time.perf_counter() - start_data_time
            if idx == num_warmup:
                start_time = time.perf_counter()
                total_data_time = total_compute_time = total_eval_time = 0.0
                num_images = 0
            try:
                num_images += len(inputs)
            except TypeError:
                num_images += 1
            start_compute_time = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            total_compute_time += time.perf_counter() - start_compute_time
            start_eval_time = time.perf_counter()
            evaluator.process(inputs, outputs)
            total_eval_time += time.perf_counter() - start_eval_time
            start_data_time = time.perf_counter()

    num_done = idx + 1
    total_time = time.perf_counter() - start_time
    timed = max(num_done - num_warmup, 0)
    if timed > 0:
        logger.info(
            "Total inference time: %s (%.6f s / iter per device, on %d devices)",
            str(datetime.timedelta(seconds=int(total_time))),
            total_time / timed,
            num_devices,
        )
        logger.info(
            "Total inference pure compute time: %s (%.6f s / iter per device, on %d devices)",
            str(datetime.timedelta(seconds=int(total_compute_time))),
            total_compute_time / timed,
            num_devices,
        )
        logger.info(
            "Per image: %.6f s total, %.6f s compute, %.6f s data, %.6f s evaluator "
            "(%d images after %d warm-up iterations)",
            total_time / max(num_images, 1),
            total_compute_time / max(num_images, 1),
            total_data_time / max(num_images, 1),
            total_eval_time / max(num_images, 1),
            num_images,
            num_warmup,
        )
    results = evaluator.evaluate()
    # An evaluator may return None on non-main processes; callers expect a dict.
    if results is None:
        results = {}
    return results

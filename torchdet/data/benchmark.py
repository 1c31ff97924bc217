"""Measure data loading speed stage by stage: reading dicts, mapping, and worker loading."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch.utils.data as torchdata

from .build import build_batch_data_loader
from .common import DatasetFromList, MapDataset
from .samplers import TrainingSampler

__all__ = ["DataLoaderBenchmark", "iter_benchmark"]

logger = logging.getLogger(__name__)


def iter_benchmark(
    iterator: Iterable, num_iter: int, warmup: int = 5, max_time_seconds: float = 60.0
) -> tuple[float, list[float]]:
    """Time ``num_iter`` steps of ``iterator`` after ``warmup`` steps.

    Returns:
        (average seconds per step, list of per-step seconds). Stops early after
        ``max_time_seconds``.
    """
    if num_iter <= 0:
        raise ValueError(f"num_iter must be positive, got {num_iter}")
    it = iter(iterator)
    for _ in range(warmup):
        next(it)
    times = []
    start = last = time.perf_counter()
    for _ in range(num_iter):
        next(it)
        now = time.perf_counter()
        times.append(now - last)
        last = now
        if now - start > max_time_seconds:
            break
    return (last - start) / len(times), times


class _DiscardOutput(torchdata.Dataset):
    """Maps each item and returns a constant: a loader of it pays no inter-process transfer."""

    def __init__(self, dataset: torchdata.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> int:
        self.dataset[idx]
        return 0


class DataLoaderBenchmark:
    """Benchmark the stages of a training data loader.

    Args:
        dataset: list of dataset dicts (or a map-style dataset).
        mapper: the dataset mapper (e.g. ``DatasetMapper``).
        sampler: index sampler; default ``TrainingSampler(len(dataset), seed=0)``.
        total_batch_size: batch size of the loader.
        num_workers: DataLoader workers for :meth:`benchmark_workers`.
        max_time_seconds: time cap of each benchmark.
    """

    def __init__(
        self,
        dataset: list | torchdata.Dataset,
        *,
        mapper: Callable,
        sampler: torchdata.Sampler | None = None,
        total_batch_size: int,
        num_workers: int = 0,
        max_time_seconds: float = 90.0,
    ):
        if isinstance(dataset, list):
            dataset = DatasetFromList(dataset, copy=False, serialize=True)
        self.dataset = dataset
        self.mapper = mapper
        self.sampler = sampler if sampler is not None else TrainingSampler(len(dataset), seed=0)
        self.total_batch_size = total_batch_size
        self.num_workers = num_workers
        self.per_gpu_batch_size = total_batch_size
        self.max_time_seconds = max_time_seconds

    def _log(self, what: str, avg: float, times: list[float], unit: str) -> dict[str, Any]:
        per_s = 1.0 / avg if avg > 0 else float("inf")
        logger.info(
            "%s: %.2f %s/s (median step %.4fs over %d steps)",
            what,
            per_s,
            unit,
            float(np.median(times)),
            len(times),
        )
        return {"seconds_per_step": avg, "steps_per_s": per_s, "num_steps": len(times)}

    def benchmark_dataset(self, num_iter: int, warmup: int = 5) -> dict[str, Any]:
        """Speed of reading dataset dicts in sampler order (no mapping)."""

        def items():
            for idx in self.sampler:
                yield self.dataset[idx]

        avg, times = iter_benchmark(items(), num_iter, warmup, self.max_time_seconds)
        return self._log("Dataset", avg, times, "items")

    def benchmark_mapper(self, num_iter: int, warmup: int = 5) -> dict[str, Any]:
        """Speed of reading + mapping single items in the main process."""
        mapped = MapDataset(self.dataset, self.mapper)

        def items():
            for idx in self.sampler:
                yield mapped[idx]

        avg, times = iter_benchmark(items(), num_iter, warmup, self.max_time_seconds)
        return self._log("Dataset + mapper", avg, times, "items")

    def benchmark_workers(
        self, num_iter: int, warmup: int = 10, num_workers: int | None = None
    ) -> dict[str, Any]:
        """Speed of the full batched loader with ``num_workers`` workers (batches/s)."""
        loader = build_batch_data_loader(
            MapDataset(self.dataset, self.mapper),
            self.sampler,
            self.total_batch_size,
            num_workers=self.num_workers if num_workers is None else num_workers,
        )
        avg, times = iter_benchmark(loader, num_iter, warmup, self.max_time_seconds)
        out = self._log("Loader", avg, times, "batches")
        out["images_per_s"] = out["steps_per_s"] * self.total_batch_size
        return out

    def benchmark_IPC(  # noqa: N802 (Detectron2's name)
        self, num_iter: int, warmup: int = 10, num_workers: int | None = None
    ) -> dict[str, Any]:
        """Like :meth:`benchmark_workers`, but the workers send nothing back: the difference
        to it is the cost of moving mapped items between processes."""
        loader = build_batch_data_loader(
            _DiscardOutput(MapDataset(self.dataset, self.mapper)),
            self.sampler,
            self.total_batch_size,
            num_workers=self.num_workers if num_workers is None else num_workers,
        )
        avg, times = iter_benchmark(loader, num_iter, warmup, self.max_time_seconds)
        out = self._log("Loader without transfer", avg, times, "batches")
        out["images_per_s"] = out["steps_per_s"] * self.total_batch_size
        return out

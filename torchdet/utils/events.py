"""Training-time metrics: the ``EventStorage`` that model code logs into, and the writers that
print it, append it to ``metrics.json`` or send it to TensorBoard.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from torchdet.utils.file_io import PathManager

__all__ = [
    "CommonMetricPrinter",
    "EventStorage",
    "EventWriter",
    "HistoryBuffer",
    "JSONWriter",
    "TensorboardXWriter",
    "get_event_storage",
]

_CURRENT_STORAGE_STACK: list[EventStorage] = []


def get_event_storage() -> EventStorage:
    """The innermost ``EventStorage`` being used.

    Raises:
        RuntimeError: when called outside a ``with EventStorage(...)`` block.
    """
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() has to be called inside a 'with EventStorage(...)' context!"
        )
    return _CURRENT_STORAGE_STACK[-1]


class HistoryBuffer:
    """The history of one scalar: ``(value, iteration)`` pairs, the newest ``max_length`` kept,
    with median/average over the last values and a global average over all of them.
    """

    def __init__(self, max_length: int = 1000000) -> None:
        self._max_length = max_length
        self._data: list[tuple[float, float]] = []
        self._count = 0
        self._global_avg = 0.0

    def update(self, value: float, iteration: float | None = None) -> None:
        """Append ``value`` at ``iteration`` (default: the count of values so far)."""
        if iteration is None:
            iteration = self._count
        if len(self._data) == self._max_length:
            self._data.pop(0)
        self._data.append((value, iteration))
        self._count += 1
        # Running mean: no need to keep values that fell off the window.
        self._global_avg += (value - self._global_avg) / self._count

    def latest(self) -> float:
        return self._data[-1][0]

    def median(self, window_size: int) -> float:
        return float(np.median([x[0] for x in self._data[-window_size:]]))

    def avg(self, window_size: int) -> float:
        return float(np.mean([x[0] for x in self._data[-window_size:]]))

    def global_avg(self) -> float:
        return self._global_avg

    def values(self) -> list[tuple[float, float]]:
        return self._data


class EventStorage:
    """Holds the metrics (scalars, histograms, images) of a training run, by iteration.

    Model code logs with ``get_event_storage().put_scalar(...)`` while a storage is active
    (``with EventStorage(start_iter) as storage:``); writers read it periodically.
    """

    def __init__(self, start_iter: int = 0) -> None:
        self._history: dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: dict[str, bool] = {}
        self._latest_scalars: dict[str, tuple[float, int]] = {}
        self._iter = start_iter
        self._current_prefix = ""
        self._vis_data: list[tuple[str, Any, int]] = []
        self._histograms: list[dict[str, Any]] = []

    def put_image(self, img_name: str, img_tensor: torch.Tensor | np.ndarray) -> None:
        """Add an image to be shown by TensorBoard.

        Args:
            img_name: the tag.
            img_tensor (Tensor[3, H, W] or ndarray): RGB, float in [0, 1] or uint8 in [0, 255].
        """
        self._vis_data.append((img_name, img_tensor, self._iter))

    def put_scalar(self, name: str, value: Any, smoothing_hint: bool = True) -> None:
        """Record ``value`` for ``name`` at the current iteration.

        Args:
            name: metric name (the current ``name_scope`` prefix is added).
            value: a number or a one-element tensor.
            smoothing_hint: whether writers should show a smoothed (median) value; the first
                hint given for a name is kept.
        """
        name = self._current_prefix + name
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"put_scalar({name!r}): expected one element, got {value.shape}")
            value = value.item()
        value = float(value)
        self._history[name].update(value, self._iter)
        self._latest_scalars[name] = (value, self._iter)
        existing = self._smoothing_hints.get(name)
        if existing is None:
            self._smoothing_hints[name] = smoothing_hint
        elif existing != smoothing_hint:
            raise ValueError(f"put_scalar({name!r}): smoothing_hint changed from {existing}")

    def put_scalars(self, *, smoothing_hint: bool = True, **kwargs: Any) -> None:
        """Record several scalars with the same smoothing hint: ``put_scalars(a=1, b=2.0)``."""
        for k, v in kwargs.items():
            self.put_scalar(k, v, smoothing_hint=smoothing_hint)

    def put_histogram(self, hist_name: str, hist_tensor: torch.Tensor, bins: int = 1000) -> None:
        """Record a histogram of the values of ``hist_tensor`` (for TensorBoard)."""
        if hist_tensor.numel() == 0:
            raise ValueError(f"put_histogram({hist_name!r}): empty tensor")
        values = hist_tensor.detach().float().cpu()
        ht_min, ht_max = values.min().item(), values.max().item()
        counts = torch.histc(values, bins=bins, min=ht_min, max=ht_max)
        edges = torch.linspace(ht_min, ht_max, bins + 1)
        self._histograms.append(
            {
                "tag": hist_name,
                "min": ht_min,
                "max": ht_max,
                "num": len(values.view(-1)),
                "sum": float(values.sum()),
                "sum_squares": float((values**2).sum()),
                "bucket_limits": edges[1:].tolist(),
                "bucket_counts": counts.tolist(),
                "global_step": self._iter,
            }
        )

    def history(self, name: str) -> HistoryBuffer:
        """The ``HistoryBuffer`` of ``name``; KeyError naming it when never recorded."""
        ret = self._history.get(name)
        if ret is None:
            raise KeyError(f"No history metric available for {name}!")
        return ret

    def histories(self) -> dict[str, HistoryBuffer]:
        return self._history

    def latest(self) -> dict[str, tuple[float, int]]:
        """name -> (latest value, iteration at which it was recorded)."""
        return self._latest_scalars

    def latest_with_smoothing_hint(self, window_size: int = 20) -> dict[str, tuple[float, int]]:
        """Like :meth:`latest`, but metrics with a smoothing hint report the median of the
        values recorded in the last ``window_size`` iterations.
        """
        result = {}
        for k, (v, itr) in self._latest_scalars.items():
            if self._smoothing_hints[k]:
                # Only values recorded within the window of iterations, not the last N values:
                # a metric logged every k iterations would otherwise average a long period.
                values = [x for x, i in self._history[k].values() if i > itr - window_size]
                v = float(np.median(values)) if values else v
            result[k] = (v, itr)
        return result

    def smoothing_hints(self) -> dict[str, bool]:
        return self._smoothing_hints

    def step(self) -> None:
        """Advance to the next iteration (the trainer calls it after each one)."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The current iteration; set by the trainer before each step."""
        return self._iter

    @iter.setter
    def iter(self, val: int) -> None:
        self._iter = int(val)

    @property
    def iteration(self) -> int:  # backward compatibility with Detectron2
        return self._iter

    def __enter__(self) -> EventStorage:
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if not _CURRENT_STORAGE_STACK or _CURRENT_STORAGE_STACK[-1] is not self:
            raise RuntimeError("EventStorage contexts exited out of order")
        _CURRENT_STORAGE_STACK.pop()

    @contextmanager
    def name_scope(self, name: str):
        """Prefix the names of scalars put inside the block with ``name + "/"``."""
        old_prefix = self._current_prefix
        self._current_prefix = name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._current_prefix = old_prefix

    def clear_images(self) -> None:
        """Drop the images (a writer calls it once it has written them)."""
        self._vis_data = []

    def clear_histograms(self) -> None:
        """Drop the histograms (a writer calls it once it has written them)."""
        self._histograms = []


class EventWriter:
    """Base class of the objects that write the contents of an ``EventStorage`` somewhere."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """Append the latest scalars to a file, one JSON object per line per iteration::

    {"iteration": 19, "loss": 1.2, "lr": 0.0025, ...}
    """

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        """
        Args:
            json_file: path of the file, opened in append mode (a resumed run continues it).
            window_size: window of the median for metrics with a smoothing hint.
        """
        self._file_handle = PathManager.open(json_file, "a")
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        to_save: dict[int, dict[str, float]] = defaultdict(dict)
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr <= self._last_write:  # already written
                continue
            to_save[itr][k] = v
        if to_save:
            self._last_write = max(to_save.keys())
        for itr, scalars in sorted(to_save.items()):
            scalars["iteration"] = itr
            self._file_handle.write(json.dumps(scalars, sort_keys=True) + "\n")
        self._file_handle.flush()
        with contextlib.suppress(AttributeError, OSError):  # not a real file
            os.fsync(self._file_handle.fileno())

    def close(self) -> None:
        self._file_handle.close()


class TensorboardXWriter(EventWriter):
    """Write scalars, images and histograms to TensorBoard (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any) -> None:
        """
        Args:
            log_dir: the TensorBoard log folder.
            window_size: window of the median for metrics with a smoothing hint.
            kwargs: passed to ``SummaryWriter``.

        Raises:
            ImportError: when the ``tensorboard`` package is not installed.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                "TensorboardXWriter needs the 'tensorboard' package: pip install tensorboard"
            ) from e
        self._window_size = window_size
        self._writer = SummaryWriter(log_dir, **kwargs)
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        new_last_write = self._last_write
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                self._writer.add_scalar(k, v, itr)
                new_last_write = max(new_last_write, itr)
        self._last_write = new_last_write
        if storage._vis_data:
            for img_name, img, step_num in storage._vis_data:
                self._writer.add_image(img_name, img, step_num)
            storage.clear_images()
        if storage._histograms:
            for params in storage._histograms:
                self._writer.add_histogram_raw(**params)
            storage.clear_histograms()

    def close(self) -> None:
        if hasattr(self, "_writer"):
            self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Log the common metrics of detection training to the terminal: ETA, losses, time,
    data time, learning rate and peak CUDA memory.
    """

    def __init__(self, max_iter: int | None = None, window_size: int = 20) -> None:
        """
        Args:
            max_iter: the total number of iterations (for the ETA); None to not print one.
            window_size: window of the medians of losses and times.
        """
        self.logger = logging.getLogger("torchdet.utils.events")
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_write: tuple[int, float] | None = None

    def _get_eta(self, storage: EventStorage) -> str | None:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        try:
            eta_seconds = storage.history("time").median(1000) * (self._max_iter - iteration - 1)
            storage.put_scalar("eta_seconds", eta_seconds, smoothing_hint=False)
            return str(datetime.timedelta(seconds=int(eta_seconds)))
        except KeyError:
            # No "time" yet (e.g. before the 2nd iteration): estimate from the wall clock.
            eta = None
            if self._last_write is not None:
                last_iter, last_time = self._last_write
                per_iter = (time.perf_counter() - last_time) / max(iteration - last_iter, 1)
                eta = str(
                    datetime.timedelta(seconds=int(per_iter * (self._max_iter - iteration - 1)))
                )
            self._last_write = (iteration, time.perf_counter())
            return eta

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if self._max_iter is not None and iteration == self._max_iter:
            # The final write after training: only some hooks run, nothing new to print.
            return
        hist = storage.histories()

        def median(name: str) -> str:
            return f"{hist[name].median(self._window_size):.4f}" if name in hist else "N/A"

        def avg(name: str) -> str:
            return f"{hist[name].avg(self._window_size):.4f}" if name in hist else "N/A"

        lr = f"{hist['lr'].latest():.5g}" if "lr" in hist else "N/A"
        eta = self._get_eta(storage)
        max_mem = ""
        if torch.cuda.is_available():
            max_mem = f"max_mem: {torch.cuda.max_memory_allocated() / 1024.0 / 1024.0:.0f}M"
        losses = "  ".join(
            f"{k}: {h.median(self._window_size):.4g}" for k, h in hist.items() if "loss" in k
        )
        self.logger.info(
            "%siter: %d  %s  time: %s  data_time: %s  lr: %s  %s",
            f"eta: {eta}  " if eta else "",
            iteration,
            losses,
            avg("time"),
            median("data_time"),
            lr,
            max_mem,
        )

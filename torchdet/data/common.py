"""Dataset wrappers used by the loaders: list storage, mapping, iteration and batching."""

from __future__ import annotations

import copy
import io
import itertools
import logging
import pickle
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data as torchdata

__all__ = [
    "AspectRatioGroupedDataset",
    "DataMappingError",
    "DatasetFromList",
    "MapDataset",
    "ToIterableDataset",
    "pack_for_transfer",
    "unpack_transferred",
]

logger = logging.getLogger(__name__)


class DataMappingError(RuntimeError):
    """Mapping one dataset item failed; the message names its file and image id."""


def describe_item(item: Any) -> str:
    """``file_name=..., image_id=...`` for a dataset dict (what is known of it)."""
    if isinstance(item, dict):
        return f"file_name={item.get('file_name', '?')!r}, image_id={item.get('image_id', '?')!r}"
    return f"item of type {type(item).__name__}"


class _MapIterableDataset(torchdata.IterableDataset):
    """``map_func`` over an iterable dataset; items mapped to ``None`` are skipped."""

    def __init__(self, dataset: torchdata.IterableDataset, map_func: Callable):
        self._dataset = dataset
        self._map_func = map_func

    def __len__(self) -> int:
        return len(self._dataset)

    def __iter__(self) -> Iterator[Any]:
        for item in self._dataset:
            out = _apply_map(self._map_func, item)
            if out is not None:
                yield out


def _apply_map(map_func: Callable, item: Any) -> Any:
    try:
        return map_func(item)
    except DataMappingError:
        raise
    except Exception as e:
        raise DataMappingError(
            f"mapping dataset item ({describe_item(item)}) failed: {type(e).__name__}: {e}"
        ) from e


class MapDataset(torchdata.Dataset):
    """Apply ``map_func`` to each item of ``dataset``.

    When ``map_func`` returns ``None`` (it rejects the item), another index that has not failed
    is tried instead; after 3 retries each further retry logs a warning naming the original item.
    An exception from ``map_func`` is re-raised as :class:`DataMappingError` naming the file and
    image id of the item (so a DataLoader worker's error says which image broke).
    An iterable ``dataset`` gives an iterable ``MapDataset`` that skips ``None`` results.
    """

    def __new__(cls, dataset, map_func):
        if isinstance(dataset, torchdata.IterableDataset):
            return _MapIterableDataset(dataset, map_func)
        return super().__new__(cls)

    def __init__(self, dataset: torchdata.Dataset, map_func: Callable):
        self._dataset = dataset
        self._map_func = map_func
        self._rng = random.Random(42)
        # Indices not known to fail; fallbacks are drawn from these.
        self._fallback_candidates = set(range(len(dataset)))

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int) -> Any:
        retry_count = 0
        cur_idx = int(idx)
        while True:
            item = self._dataset[cur_idx]
            out = _apply_map(self._map_func, item)
            if out is not None:
                self._fallback_candidates.add(cur_idx)
                return out
            retry_count += 1
            self._fallback_candidates.discard(cur_idx)
            if not self._fallback_candidates:
                raise DataMappingError(
                    f"map function returned None for every item tried, last {describe_item(item)}"
                )
            cur_idx = self._rng.choice(sorted(self._fallback_candidates))
            if retry_count >= 3:
                logger.warning(
                    "Map function rejected dataset index %d (%s) and %d fallbacks; retrying "
                    "with index %d",
                    idx,
                    describe_item(self._dataset[idx]),
                    retry_count - 1,
                    cur_idx,
                )


class DatasetFromList(torchdata.Dataset):
    """A list as a dataset.

    With ``serialize=True`` (default) the items are pickled into one contiguous numpy byte
    buffer with an offsets array. Reading an item touches no Python object of the list, so
    DataLoader workers forked from the main process share the buffer's pages instead of
    copying them on reference-count updates (which would multiply memory by the worker count).

    Args:
        lst: the items (usually dataset dicts).
        copy: without serialization, return deep copies of the items.
        serialize: store the items as one pickled buffer.
    """

    def __init__(self, lst: list, copy: bool = True, serialize: bool = True):
        if not isinstance(lst, list):
            raise TypeError(f"DatasetFromList takes a list, got {type(lst).__name__}")
        self._copy = copy
        self._serialize = serialize
        if serialize:
            chunks = [np.frombuffer(pickle.dumps(x, protocol=-1), dtype=np.uint8) for x in lst]
            self._addr = np.cumsum(np.asarray([len(c) for c in chunks], dtype=np.int64))
            self._buffer = np.concatenate(chunks) if chunks else np.zeros((0,), dtype=np.uint8)
            self._lst = None
            logger.info("Serialized dataset takes %.2f MiB", self._buffer.nbytes / 1024**2)
        else:
            self._lst = lst

    def __len__(self) -> int:
        return len(self._addr) if self._serialize else len(self._lst)

    def __getitem__(self, idx: int) -> Any:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"DatasetFromList index {idx} out of range for {n} items")
        idx = int(idx) % n
        if self._serialize:
            start = 0 if idx == 0 else int(self._addr[idx - 1])
            end = int(self._addr[idx])
            return pickle.loads(memoryview(self._buffer[start:end]))
        if self._copy:
            return copy.deepcopy(self._lst[idx])
        return self._lst[idx]


class ToIterableDataset(torchdata.IterableDataset):
    """Iterate ``dataset[i]`` for ``i`` in ``sampler``.

    With several DataLoader workers and ``shard_sampler=True``, worker ``k`` of ``K`` takes
    sampler positions ``k, k + K, ...``; the DataLoader interleaves workers in turn, so the
    output order is the sampler's order.
    """

    def __init__(self, dataset: torchdata.Dataset, sampler: torchdata.Sampler, shard_sampler=True):
        if isinstance(dataset, torchdata.IterableDataset):
            raise TypeError("ToIterableDataset takes a map-style dataset, got an iterable one")
        if not isinstance(sampler, torchdata.Sampler):
            raise TypeError(f"sampler must be a torch Sampler, got {type(sampler)}")
        self.dataset = dataset
        self.sampler = sampler
        self.shard_sampler = shard_sampler

    def __iter__(self) -> Iterator[Any]:
        indices: Iterator[int] = iter(self.sampler)
        info = torchdata.get_worker_info()
        if self.shard_sampler and info is not None and info.num_workers > 1:
            indices = itertools.islice(indices, info.id, None, info.num_workers)
        for idx in indices:
            yield self.dataset[idx]

    def __len__(self) -> int:
        return len(self.sampler)


class AspectRatioGroupedDataset(torchdata.IterableDataset):
    """Batch a stream of dataset dicts so each batch has only landscape (w > h) or only
    portrait/square images, by the dicts' ``width``/``height``.

    Yields:
        list[dict] of length ``batch_size``.
    """

    def __init__(self, dataset: Any, batch_size: int):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self._buckets: list[list[dict]] = [[], []]

    def __iter__(self) -> Iterator[list[dict]]:
        for d in self.dataset:
            w, h = d["width"], d["height"]
            bucket = self._buckets[0 if w > h else 1]
            bucket.append(d)
            if len(bucket) == self.batch_size:
                batch = bucket[:]
                del bucket[:]
                yield batch


def _tensor_from_numpy(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


class _TensorAsNumpyPickler(pickle.Pickler):
    """Pickles CPU tensors as numpy arrays (plain bytes) instead of torch's storage path."""

    def reducer_override(self, obj: Any) -> Any:
        if (
            type(obj) is torch.Tensor
            and obj.layout == torch.strided
            and obj.device.type == "cpu"
            and not obj.requires_grad
        ):
            try:
                return _tensor_from_numpy, (obj.numpy(),)
            except (TypeError, RuntimeError):  # dtypes numpy lacks (bfloat16, ...)
                return NotImplemented
        return NotImplemented


def pack_for_transfer(obj: Any) -> bytes:
    """Serialize ``obj`` (e.g. a mapped dataset dict) into one bytes object, tensors as numpy.

    DataLoader workers otherwise send each tensor through its own shared-memory segment whose
    file descriptor is passed over a socket; for a detection item (image, boxes, classes, ...)
    that costs about 0.5 ms per tensor in the main process, more than copying the bytes.
    """
    buf = io.BytesIO()
    _TensorAsNumpyPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def unpack_transferred(data: bytes) -> Any:
    """Inverse of :func:`pack_for_transfer` (tensors come back writable, on the CPU)."""
    return pickle.loads(data)


class PackAfter:
    """Picklable ``collate_fn`` for workers: ``pack_for_transfer(collate_fn(batch))``."""

    def __init__(self, collate_fn: Callable | None = None):
        self.collate_fn = collate_fn

    def __call__(self, batch: Any) -> bytes:
        return pack_for_transfer(batch if self.collate_fn is None else self.collate_fn(batch))


class UnpackedLoader(torchdata.IterableDataset):
    """Iterate a DataLoader whose workers yield :func:`pack_for_transfer` bytes, unpacked."""

    def __init__(self, loader: torchdata.DataLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        for data in self.loader:
            yield unpack_transferred(data)

    def __len__(self) -> int:
        return len(self.loader)

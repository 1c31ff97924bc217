"""Dataset wrappers used by the loaders: list storage, mapping, iteration and batching."""

from __future__ import annotations

import contextlib
import copy
import io
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

    def __new__(cls, dataset=None, map_func=None):
        # Unpickling (spawned DataLoader workers) calls __new__ without arguments.
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


# Mixed into every item seed, so augmentation seeds differ from the sampler's own seed.
_ITEM_SEED_TAG = 0x5EED17E4


def item_seed(base_seed: int, global_position: int) -> int:
    """The seed of the item at ``global_position`` of a stream seeded with ``base_seed``.

    ``SeedSequence`` hashes the pair, so neighbouring positions get unrelated seeds.
    """
    entropy = [int(base_seed) % 2**64, int(global_position), _ITEM_SEED_TAG]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _seed_generators(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    # The CPU generator only: torch.manual_seed would also reseed CUDA's in the main process.
    torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def _isolated_generators() -> Iterator[None]:
    """Restore python's, numpy's and torch's CPU generators on exit."""
    states = (random.getstate(), np.random.get_state(), torch.default_generator.get_state())
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.default_generator.set_state(states[2])


class ToIterableDataset(torchdata.IterableDataset):
    """Iterate ``dataset[i]`` for ``i`` in ``sampler``.

    With several DataLoader workers and ``shard_sampler=True``, the sampler's stream is cut in
    chunks of ``shard_chunk_size`` positions and worker ``k`` of ``K`` takes chunks
    ``k, k + K, ...``; the DataLoader takes workers in turn, so with ``shard_chunk_size`` equal
    to its batch size (or 1 with ``batch_size=None``) the output order is the sampler's order.

    With a resumable training sampler (one with a ``seed`` in ``state_dict()`` and
    ``global_position``), python's, numpy's and torch's generators are seeded from
    ``item_seed(seed, global position)`` before each item is read (in the main process, within
    a scope that restores them after). An item's augmentation then depends only on the seed
    and its stream position, not on the worker count nor on where training was resumed.
    """

    def __init__(
        self,
        dataset: torchdata.Dataset,
        sampler: torchdata.Sampler,
        shard_sampler: bool = True,
        shard_chunk_size: int = 1,
    ):
        if isinstance(dataset, torchdata.IterableDataset):
            raise TypeError("ToIterableDataset takes a map-style dataset, got an iterable one")
        if not isinstance(sampler, torchdata.Sampler):
            raise TypeError(f"sampler must be a torch Sampler, got {type(sampler)}")
        if int(shard_chunk_size) <= 0:
            raise ValueError(f"shard_chunk_size must be positive, got {shard_chunk_size}")
        self.dataset = dataset
        self.sampler = sampler
        self.shard_sampler = shard_sampler
        self.shard_chunk_size = int(shard_chunk_size)

    @property
    def reseeds_per_item(self) -> bool:
        """Whether items are seeded by stream position (the sampler is a resumable one)."""
        return hasattr(self.sampler, "global_position") and hasattr(self.sampler, "start")

    def _read(self, idx: int, position: int, seed: int | None, in_worker: bool) -> Any:
        if seed is None:
            return self.dataset[idx]
        s = item_seed(seed, self.sampler.global_position(position))
        if in_worker:  # a worker's generators serve nothing else
            _seed_generators(s)
            return self.dataset[idx]
        with _isolated_generators():
            _seed_generators(s)
            return self.dataset[idx]

    def _seed(self) -> int | None:
        return int(self.sampler.state_dict()["seed"]) if self.reseeds_per_item else None

    def __iter__(self) -> Iterator[Any]:
        info = torchdata.get_worker_info()
        seed = self._seed()
        start = self.sampler.start if seed is not None else 0
        shard = self.shard_sampler and info is not None and info.num_workers > 1
        chunk = self.shard_chunk_size
        for k, idx in enumerate(self.sampler):
            if shard and (k // chunk) % info.num_workers != info.id:
                continue
            yield self._read(idx, start + k, seed, info is not None)

    def items_at(self, positions: list[int]) -> list[Any]:
        """Read again, in this process, the items at the given rank-local stream positions;
        they equal those the stream gave there (needs a resumable sampler).
        """
        seed = self._seed()
        if seed is None:
            raise TypeError(
                f"items_at needs a resumable sampler (seed, positions); got {type(self.sampler)}"
            )
        indices = self.sampler.indices_at(list(positions))
        return [self._read(i, p, seed, False) for i, p in zip(indices, positions)]

    def __len__(self) -> int:
        return len(self.sampler)


def _find_stream_source(obj: Any, max_depth: int = 6) -> ToIterableDataset | None:
    """The ``ToIterableDataset`` a chain of loader wrappers reads from, if any."""
    for _ in range(max_depth):
        if isinstance(obj, ToIterableDataset):
            return obj
        nxt = None
        for attr in ("loader", "dataset", "_dataset"):
            nxt = getattr(obj, attr, None)
            if nxt is not None:
                break
        if nxt is None:
            return None
        obj = nxt
    return None


class AspectRatioGroupedDataset(torchdata.IterableDataset):
    """Batch a stream of dataset dicts so each batch has only landscape (w > h) or only
    portrait/square images, by the dicts' ``width``/``height``.

    Resumable when it reads (through DataLoaders) a :class:`ToIterableDataset` with a
    resumable sampler, in stream order: ``state_dict()`` holds the stream positions of the
    images waiting in the two buckets and the next position; after ``load_state_dict`` the next
    ``iter()`` re-reads the waiting images (seeded by position, so they are the same tensors)
    and continues the stream from the saved next position.

    Yields:
        list[dict] of length ``batch_size``.
    """

    def __init__(self, dataset: Any, batch_size: int):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self._buckets: list[list[dict]] = [[], []]
        self._positions: list[list[int]] = [[], []]
        self._next_position: int | None = None
        self._to_restore: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[list[dict]]:
        source = _find_stream_source(self.dataset)
        resumable = source is not None and source.reseeds_per_item
        buckets: list[list[dict]] = [[], []]
        positions: list[list[int]] = [[], []]
        restore, self._to_restore = self._to_restore, None
        if restore is not None and restore.get("next_position") is not None:
            if not resumable:
                raise TypeError(
                    "AspectRatioGroupedDataset: a saved state can only be restored when reading "
                    "a ToIterableDataset with a resumable sampler"
                )
            waiting = [sorted(int(p) for p in b) for b in restore["pending"]]
            flat = waiting[0] + waiting[1]
            items = source.items_at(flat)
            buckets = [items[: len(waiting[0])], items[len(waiting[0]) :]]
            positions = waiting
            sampler = source.sampler
            sampler.load_state_dict(
                {"seed": sampler.state_dict()["seed"], "num_yielded": restore["next_position"]}
            )
        self._buckets, self._positions = buckets, positions
        self._next_position = source.sampler.start if resumable else 0
        # A DataLoader draws its workers' base seed from torch's generator when its iterator
        # is made (here, at the first batch): keep that draw out of the training stream, or a
        # resumed run (which makes it at another iteration) would shift the stream.
        with _isolated_generators():
            stream = iter(self.dataset)
        for d in stream:
            pos = self._next_position
            self._next_position += 1
            b = 0 if d["width"] > d["height"] else 1
            buckets[b].append(d)
            positions[b].append(pos)
            if len(buckets[b]) == self.batch_size:
                batch = buckets[b][:]
                del buckets[b][:]
                del positions[b][:]
                yield batch

    def state_dict(self) -> dict[str, Any]:
        """``{"next_position", "pending"}``: the stream position of the next image to read
        (``None`` before the first iteration) and those of the images waiting per bucket.
        """
        if self._to_restore is not None:  # loaded but not iterated yet
            return copy.deepcopy(self._to_restore)
        return {"next_position": self._next_position, "pending": [list(p) for p in self._positions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter()`` continue from ``state`` (see :meth:`state_dict`)."""
        missing = {"next_position", "pending"} - set(state)
        if missing:
            raise KeyError(f"AspectRatioGroupedDataset.load_state_dict: missing {sorted(missing)}")
        if len(state["pending"]) != 2:
            raise ValueError(
                f"AspectRatioGroupedDataset: 'pending' must hold 2 buckets, got {state['pending']}"
            )
        self._to_restore = {
            "next_position": state["next_position"],
            "pending": [list(b) for b in state["pending"]],
        }


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
        # The DataLoader's iterator is made now (not at the first item), so a caller that
        # isolates iter() from the training generators also isolates its seed draw.
        return map(unpack_transferred, iter(self.loader))

    def __len__(self) -> int:
        return len(self.loader)

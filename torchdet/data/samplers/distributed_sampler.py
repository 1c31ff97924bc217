"""Index samplers for training (infinite, seeded, sharded by rank) and inference (exact shards).

Every training sampler yields the indices of one global seeded stream; rank ``r`` of ``W`` takes
positions ``r, r + W, r + 2W, ...``, so ranks never see the same position and the union over
ranks is the global stream. Training samplers are resumable: ``state_dict()`` records how many
indices this rank has yielded, and a sampler built with ``start=`` (or ``load_state_dict``)
continues from exactly that position.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data.sampler import Sampler

__all__ = [
    "InferenceSampler",
    "RandomSubsetTrainingSampler",
    "RepeatFactorTrainingSampler",
    "TrainingSampler",
]


def _rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shared_random_seed() -> int:
    """A random seed that is the same on every rank (rank 0's draw)."""
    seed = int(np.random.randint(2**31))
    rank, world = _rank_and_world_size()
    if world > 1:
        t = torch.tensor([seed], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, src=0)
        seed = int(t.item())
    return seed


def _check_size(name: str, size: int) -> None:
    if not isinstance(size, int | np.integer) or isinstance(size, bool):
        raise TypeError(f"{name}: size must be an int, got {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"{name}: size must be positive, got {size}")


class _ResumableShardedSampler(Sampler):
    """Shards an infinite index stream by rank and counts what this rank yielded."""

    def __init__(self, seed: int | None, start: int):
        if seed is None:
            seed = _shared_random_seed()
        self._seed = int(seed)
        self._rank, self._world_size = _rank_and_world_size()
        if start < 0:
            raise ValueError(f"{type(self).__name__}: start must be >= 0, got {start}")
        self._start = int(start)
        self._num_yielded = self._start

    def _infinite_indices(self) -> Iterator[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        # This rank's k-th index is global position k * world_size + rank.
        first = self._start * self._world_size + self._rank
        self._num_yielded = self._start
        for idx in itertools.islice(self._infinite_indices(), first, None, self._world_size):
            self._num_yielded += 1
            yield idx

    @property
    def start(self) -> int:
        """This rank's stream position where the next ``iter()`` begins."""
        return self._start

    def global_position(self, position: int) -> int:
        """Position in the global (all ranks) stream of this rank's ``position``-th index."""
        return int(position) * self._world_size + self._rank

    def indices_at(self, positions: list[int]) -> list[int]:
        """The indices this rank's stream holds at the given (rank-local) positions."""
        if not positions:
            return []
        if min(positions) < 0:
            raise ValueError(f"{type(self).__name__}.indices_at: negative position in {positions}")
        wanted = {self.global_position(p) for p in positions}
        last = max(wanted)
        found: dict[int, int] = {}
        # One pass over the stream up to the last position (epochs are drawn in order).
        for g, idx in enumerate(self._infinite_indices()):
            if g in wanted:
                found[g] = idx
            if g >= last:
                break
        return [found[self.global_position(p)] for p in positions]

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "num_yielded"}``: enough to rebuild the stream at the current position.

        ``num_yielded`` counts indices yielded by iterators of this sampler in this process.
        When the sampler runs inside DataLoader workers, compute the position from the number
        of samples consumed instead (e.g. ``iteration * batch_size``) and pass it as ``start``.
        """
        return {"seed": self._seed, "num_yielded": self._num_yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next ``iter()`` continue at ``state["num_yielded"]`` with ``state["seed"]``."""
        missing = {"seed", "num_yielded"} - set(state)
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {sorted(missing)}")
        self._seed = int(state["seed"])
        self._start = int(state["num_yielded"])
        self._num_yielded = self._start


class TrainingSampler(_ResumableShardedSampler):
    """Infinite stream of shuffled epochs over ``range(size)``, sharded across ranks.

    Epoch ``e`` is ``torch.randperm(size)`` drawn from a generator seeded once with ``seed``,
    as in Detectron2, so a given seed reproduces Detectron2's order.

    Args:
        size: dataset length.
        shuffle: shuffle each epoch (otherwise ``0..size-1`` repeated).
        seed: shared by all ranks; ``None`` draws one (rank 0's) at random.
        start: number of this rank's indices to skip (to resume training).
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int | None = None, start: int = 0):
        _check_size("TrainingSampler", size)
        self._size = int(size)
        self._shuffle = shuffle
        super().__init__(seed, start)

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)


class RandomSubsetTrainingSampler(TrainingSampler):
    """``TrainingSampler`` over a fixed random subset of ``int(size * subset_ratio)`` indices.

    Args:
        size: dataset length.
        subset_ratio: fraction in (0, 1] of the dataset to use.
        shuffle: shuffle each epoch of the subset.
        seed_shuffle: seed of the epoch order (``None``: random, shared).
        seed_subset: seed choosing the subset (``None``: random, shared).
        start: number of this rank's indices to skip (to resume training).
    """

    def __init__(
        self,
        size: int,
        subset_ratio: float,
        shuffle: bool = True,
        seed_shuffle: int | None = None,
        seed_subset: int | None = None,
        start: int = 0,
    ):
        super().__init__(size=size, shuffle=shuffle, seed=seed_shuffle, start=start)
        if not 0.0 < subset_ratio <= 1.0:
            raise ValueError(f"subset_ratio must be in (0, 1], got {subset_ratio}")
        self._size_subset = int(size * subset_ratio)
        if self._size_subset <= 0:
            raise ValueError(f"subset_ratio {subset_ratio} of {size} items selects nothing")
        if seed_subset is None:
            seed_subset = _shared_random_seed()
        self._seed_subset = int(seed_subset)
        g = torch.Generator()
        g.manual_seed(self._seed_subset)
        self._indexes_subset = torch.randperm(self._size, generator=g)[: self._size_subset]

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                perm = torch.randperm(self._size_subset, generator=g)
                yield from self._indexes_subset[perm].tolist()
            else:
                yield from self._indexes_subset.tolist()


class RepeatFactorTrainingSampler(_ResumableShardedSampler):
    """Training sampler that repeats images by a per-image (fractional) factor (LVIS).

    Each epoch, image ``i`` appears ``floor(r_i)`` times plus once more with probability
    ``r_i - floor(r_i)`` (stochastic rounding), then the epoch is shuffled.

    Args:
        repeat_factors (Tensor[N] float): per-image repeat factors, >= 0.
        shuffle: shuffle each epoch.
        seed: shared seed; ``None`` draws one at random.
        start: number of this rank's indices to skip (to resume training).
    """

    def __init__(
        self,
        repeat_factors: torch.Tensor,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        start: int = 0,
    ):
        repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float32)
        if repeat_factors.ndim != 1 or len(repeat_factors) == 0:
            raise ValueError(
                f"repeat_factors must be a non-empty 1-d tensor, got {tuple(repeat_factors.shape)}"
            )
        if (repeat_factors < 0).any():
            raise ValueError("repeat_factors must be >= 0")
        self._shuffle = shuffle
        super().__init__(seed, start)
        self._int_part = torch.trunc(repeat_factors)
        self._frac_part = repeat_factors - self._int_part

    @staticmethod
    def repeat_factors_from_category_frequency(
        dataset_dicts: list[dict], repeat_thresh: float, sqrt: bool = True
    ) -> torch.Tensor:
        """Per-image repeat factors from category frequency.

        For category ``c`` with image frequency ``f(c)`` (fraction of images containing it),
        ``r(c) = max(1, sqrt(t / f(c)))`` (or ``t / f(c)`` without ``sqrt``); an image's factor is
        the largest ``r(c)`` over its categories (1 for an image with no annotation).

        Returns:
            Tensor[N] float32: one factor per dataset dict.
        """
        category_freq: dict[int, int] = defaultdict(int)
        image_cats = []
        for d in dataset_dicts:
            cats = {ann["category_id"] for ann in d["annotations"]}
            image_cats.append(cats)
            for c in cats:
                category_freq[c] += 1
        num_images = len(dataset_dicts)
        category_rep = {}
        for c, n in category_freq.items():
            ratio = repeat_thresh / (n / num_images)
            category_rep[c] = max(1.0, math.sqrt(ratio) if sqrt else ratio)
        factors = [max((category_rep[c] for c in cats), default=1.0) for cats in image_cats]
        return torch.tensor(factors, dtype=torch.float32)

    def _get_epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        rands = torch.rand(len(self._frac_part), generator=generator)
        reps = (self._int_part + (rands < self._frac_part).float()).long()
        # numpy's repeat: torch.repeat_interleave with tensor repeats costs ~0.4 ms per call here
        return torch.from_numpy(np.repeat(np.arange(len(reps)), reps.numpy()))

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            indices = self._get_epoch_indices(g)
            if self._shuffle:
                perm = torch.randperm(len(indices), generator=g)
                yield from indices[perm].tolist()
            else:
                yield from indices.tolist()


class InferenceSampler(Sampler):
    """Each index of ``range(size)`` exactly once over all ranks, in contiguous shards.

    The first ``size % world_size`` ranks get one extra index; nothing is padded or dropped.
    """

    def __init__(self, size: int):
        _check_size("InferenceSampler", size)
        self._size = int(size)
        rank, world = _rank_and_world_size()
        self._local_indices = self._get_local_indices(self._size, world, rank)

    @staticmethod
    def _get_local_indices(total_size: int, world_size: int, rank: int) -> range:
        shard_size, left = divmod(total_size, world_size)
        begin = rank * shard_size + min(rank, left)
        end = begin + shard_size + int(rank < left)
        return range(begin, end)

    def __iter__(self) -> Iterator[int]:
        yield from self._local_indices

    def __len__(self) -> int:
        return len(self._local_indices)

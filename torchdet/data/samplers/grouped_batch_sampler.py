"""Batch sampler that only puts indices of the same group in a batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data.sampler import BatchSampler, Sampler

__all__ = ["GroupedBatchSampler"]


class GroupedBatchSampler(BatchSampler):
    """Buffer indices per group and yield a batch when a group's buffer holds ``batch_size``.

    Args:
        sampler: yields dataset indices (may be infinite).
        group_ids (sequence[N] int): group of each dataset index (e.g. aspect-ratio bucket).
        batch_size: size of each batch.
    """

    def __init__(self, sampler: Sampler, group_ids: Sequence[int], batch_size: int):
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a torch Sampler, got {type(sampler)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.group_ids = np.asarray(group_ids)
        if self.group_ids.ndim != 1:
            raise ValueError(f"group_ids must be 1-d, got shape {self.group_ids.shape}")
        self.batch_size = batch_size
        groups = np.unique(self.group_ids).tolist()
        self.buffer_per_group: dict[int, list[int]] = {k: [] for k in groups}

    def __iter__(self) -> Iterator[list[int]]:
        for idx in self.sampler:
            buffer = self.buffer_per_group[self.group_ids[idx].item()]
            buffer.append(idx)
            if len(buffer) == self.batch_size:
                yield buffer[:]
                del buffer[:]

    def __len__(self) -> int:
        raise NotImplementedError("GroupedBatchSampler has no length (its sampler may be infinite)")

"""Exact resume of training loaders: a loader stopped after N batches and rebuilt from the saved
state (sampler position, grouping buckets) yields the same following batches, image ids and
augmented tensors, as the uninterrupted loader, with DataLoader workers and aspect-ratio grouping.
"""

import itertools
import pickle
import random

import numpy as np
import pytest
import torch
import torch.utils.data as torchdata

from torchdet.data import build_detection_train_loader
from torchdet.data.common import (
    AspectRatioGroupedDataset,
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
)
from torchdet.data.samplers import TrainingSampler

NUM_ITEMS, BATCH, SEED = 20, 4, 5


def _dicts() -> list[dict]:
    # Items 0, 3, 6, ... are portrait: the grouping buckets fill at different rates.
    return [
        {"image_id": i, "width": 6 if i % 3 == 0 else 8, "height": 8 if i % 3 == 0 else 6}
        for i in range(NUM_ITEMS)
    ]


def _augment(d: dict) -> dict:
    """Draws from python's, numpy's and torch's global generators, as real augmentations do."""
    flip = random.random() < 0.5
    noise = np.random.randn(3).astype(np.float32)
    img = torch.rand(3) + torch.from_numpy(noise) + float(flip)
    return {**d, "image": img}


def _loader(workers: int, grouping: bool, start: int = 0, grouping_state=None):
    sampler = TrainingSampler(NUM_ITEMS, seed=SEED, start=start)
    loader = build_detection_train_loader(
        _dicts(),
        mapper=_augment,
        sampler=sampler,
        total_batch_size=BATCH,
        aspect_ratio_grouping=grouping,
        num_workers=workers,
    )
    if grouping_state is not None:
        assert isinstance(loader, AspectRatioGroupedDataset)
        loader.load_state_dict(grouping_state)
    return loader


def _take(loader, n: int) -> tuple[list, object]:
    it = iter(loader)
    return [next(it) for _ in range(n)], it


def _assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b):
        assert [d["image_id"] for d in batch_a] == [d["image_id"] for d in batch_b]
        for da, db in zip(batch_a, batch_b):
            assert torch.equal(da["image"], db["image"])


def _ids(batches: list) -> list[list[int]]:
    return [[d["image_id"] for d in b] for b in batches]


@pytest.mark.parametrize("workers", [0, 2])
def test_grouped_loader_resumes_exactly(workers):
    n, m = 5, 6  # stop after 5 batches (past an epoch of 20 items), compare the next 6
    full, _ = _take(_loader(workers, True), n + m)
    assert all(len({d["width"] > d["height"] for d in b}) == 1 for b in full)  # grouped

    loader = _loader(workers, True)
    first, it = _take(loader, n)
    state = loader.state_dict()
    del it
    pending = state["pending"]
    assert state["next_position"] == n * BATCH + len(pending[0]) + len(pending[1])
    assert pending[0] or pending[1]  # the stop leaves images waiting: the case this covers

    resumed, _ = _take(_loader(workers, True, start=n * BATCH, grouping_state=state), m)
    _assert_same_batches(first, full[:n])
    _assert_same_batches(resumed, full[n:])

    # Control: without the grouping state the waiting images are lost and the batches differ.
    lost, _ = _take(_loader(workers, True, start=n * BATCH), m)
    assert _ids(lost) != _ids(full[n:])


@pytest.mark.parametrize("workers", [1, 2])
def test_loader_with_workers_resumes_exactly(workers):
    n, m = 3, 4
    full, _ = _take(_loader(workers, False), n + m)
    resumed, _ = _take(_loader(workers, False, start=n * BATCH), m)
    _assert_same_batches(resumed, full[n:])


def test_items_depend_only_on_stream_position():
    """Same batches with 0 and 2 workers; in stream order (whole batches per worker)."""
    no_workers, _ = _take(_loader(0, False), 5)
    two_workers, _ = _take(_loader(2, False), 5)
    _assert_same_batches(two_workers, no_workers)
    order = list(itertools.islice(iter(TrainingSampler(NUM_ITEMS, seed=SEED)), 5 * BATCH))
    assert sum(_ids(no_workers), []) == order


def test_main_process_generators_untouched_by_mapping():
    """With no workers the per-item seeding is undone: the training stream is not shifted."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    _take(_loader(0, True), 3)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_worker_chunks_are_whole_batches():
    """Worker k of 2 with chunks of 3 takes stream positions 3k..3k+2, 3k+6..3k+8, ..."""

    class _Info:
        num_workers, id = 2, 1

    ds = ToIterableDataset(DatasetFromList(list(range(12))), TrainingSampler(12, shuffle=False))
    ds.shard_chunk_size = 3
    orig = torchdata.get_worker_info
    torchdata.get_worker_info = lambda: _Info()
    try:
        got = list(itertools.islice(iter(ds), 6))
    finally:
        torchdata.get_worker_info = orig
    assert got == [3, 4, 5, 9, 10, 11]


def test_sampler_indices_at_matches_stream():
    sampler = TrainingSampler(7, seed=11)
    stream = list(itertools.islice(iter(sampler), 30))
    positions = [29, 0, 13, 7, 7]
    assert sampler.indices_at(positions) == [stream[p] for p in positions]
    assert sampler.indices_at([]) == []
    with pytest.raises(ValueError, match="negative"):
        sampler.indices_at([-1])


def test_grouping_state_validation():
    grouped = AspectRatioGroupedDataset([], 2)
    assert grouped.state_dict() == {"next_position": None, "pending": [[], []]}
    with pytest.raises(KeyError, match="pending"):
        grouped.load_state_dict({"next_position": 3})
    with pytest.raises(ValueError, match="2 buckets"):
        grouped.load_state_dict({"next_position": 3, "pending": [[1]]})
    # A plain iterable has no stream positions to re-read the waiting images from.
    grouped.load_state_dict({"next_position": 3, "pending": [[1], []]})
    assert grouped.state_dict() == {"next_position": 3, "pending": [[1], []]}
    with pytest.raises(TypeError, match="resumable sampler"):
        list(grouped)
    with pytest.raises(ValueError, match="shard_chunk_size"):
        ToIterableDataset(DatasetFromList([1]), TrainingSampler(1), shard_chunk_size=0)


def test_map_dataset_pickles_for_spawned_workers():
    """Spawned workers unpickle the dataset, which calls ``MapDataset.__new__`` with no args."""
    ds = MapDataset(DatasetFromList([-1, -2]), abs)
    copied = pickle.loads(pickle.dumps(ds))
    assert type(copied) is MapDataset and copied[1] == 2

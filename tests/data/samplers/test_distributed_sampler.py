"""Training/inference samplers: determinism, rank sharding, resume, repeat factors."""

from __future__ import annotations

import itertools
import math
from unittest import mock

import pytest
import torch

from torchdet.data.samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    RandomSubsetTrainingSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
)

_DIST = "torchdet.data.samplers.distributed_sampler._rank_and_world_size"


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_training_sampler_is_seeded_randperm_epochs():
    s = TrainingSampler(7, seed=3)
    got = _take(s, 21)
    g = torch.Generator()
    g.manual_seed(3)
    expected = sum((torch.randperm(7, generator=g).tolist() for _ in range(3)), [])
    assert got == expected
    for epoch in range(3):  # every epoch is a permutation
        assert sorted(got[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert _take(TrainingSampler(7, seed=3), 21) == got
    assert _take(TrainingSampler(7, seed=4), 21) != got
    assert _take(TrainingSampler(5, shuffle=False, seed=0), 7) == [0, 1, 2, 3, 4, 0, 1]


def test_training_sampler_sharding_disjoint_and_complete():
    world = 3
    streams = []
    for rank in range(world):
        with mock.patch(_DIST, return_value=(rank, world)):
            streams.append(_take(TrainingSampler(12, seed=7), 8))
    global_stream = _take(TrainingSampler(12, seed=7), 24)
    for rank in range(world):
        assert streams[rank] == global_stream[rank::world]
    first_epoch = [streams[r][k] for k in range(4) for r in range(world)]
    # The ranks together cover the first epoch exactly once: disjoint shards.
    assert sorted(first_epoch) == list(range(12))


@pytest.mark.parametrize("world", [1, 2])
def test_training_sampler_resume_at_position(world):
    for rank in range(world):
        with mock.patch(_DIST, return_value=(rank, world)):
            full = _take(TrainingSampler(10, seed=11), 37)
            s = TrainingSampler(10, seed=11)
            it = iter(s)
            head = [next(it) for _ in range(13)]
            state = s.state_dict()
            assert state == {"seed": 11, "num_yielded": 13}
            resumed = TrainingSampler(10, seed=0)
            resumed.load_state_dict(state)
            assert head + _take(resumed, 24) == full
            assert _take(TrainingSampler(10, seed=11, start=13), 24) == full[13:]


def test_training_sampler_validates():
    with pytest.raises(ValueError, match="positive"):
        TrainingSampler(0)
    with pytest.raises(TypeError, match="int"):
        TrainingSampler(3.5)
    with pytest.raises(KeyError, match="num_yielded"):
        TrainingSampler(3, seed=0).load_state_dict({"seed": 1})


def test_random_subset_sampler():
    s = RandomSubsetTrainingSampler(20, 0.25, seed_shuffle=1, seed_subset=2)
    g = torch.Generator()
    g.manual_seed(2)
    subset = torch.randperm(20, generator=g)[:5].tolist()
    got = _take(s, 15)
    assert set(got) == set(subset) and len(set(got)) == 5
    with pytest.raises(ValueError, match="subset_ratio"):
        RandomSubsetTrainingSampler(20, 0.0)


def test_repeat_factors_from_category_frequency_hand_case():
    # 5 images: category 0 in 4 (f = 0.8), category 1 in 1 (f = 0.2), category 2 in 2 (f = 0.4;
    # an image counts once however many annotations it has). Threshold t = 0.5:
    # r(0) = max(1, sqrt(0.625)) = 1; r(1) = sqrt(2.5); r(2) = sqrt(1.25); an image takes the
    # max over its categories, an image without annotations 1.
    dicts = [
        {"annotations": [{"category_id": 0}, {"category_id": 1}]},
        {"annotations": [{"category_id": 0}, {"category_id": 2}]},
        {"annotations": [{"category_id": 0}, {"category_id": 2}, {"category_id": 2}]},
        {"annotations": [{"category_id": 0}]},
        {"annotations": []},
    ]
    r = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.5)
    expected = [math.sqrt(0.5 / 0.2), math.sqrt(0.5 / 0.4), math.sqrt(0.5 / 0.4), 1.0, 1.0]
    torch.testing.assert_close(r, torch.tensor(expected, dtype=torch.float32))
    r_lin = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        dicts, 0.5, sqrt=False
    )
    torch.testing.assert_close(r_lin, torch.tensor([2.5, 1.25, 1.25, 1.0, 1.0]))


def test_repeat_factor_sampler_counts():
    factors = torch.tensor([1.0, 3.0, 0.5, 2.0])
    s = RepeatFactorTrainingSampler(factors, seed=0)
    n_epochs_items = _take(s, 10000)
    counts = torch.bincount(torch.tensor(n_epochs_items), minlength=4).float()
    # expected share proportional to the factors: 1 : 3 : 0.5 : 2
    share = counts / counts.sum()
    torch.testing.assert_close(share, factors / factors.sum(), atol=0.015, rtol=0)  # ~3 sigma
    with mock.patch(_DIST, return_value=(1, 2)):
        s1 = RepeatFactorTrainingSampler(factors, seed=0)
    assert _take(s1, 50) == _take(RepeatFactorTrainingSampler(factors, seed=0), 100)[1::2]
    with pytest.raises(ValueError, match=">= 0"):
        RepeatFactorTrainingSampler(torch.tensor([-1.0]))


@pytest.mark.parametrize(("size", "world"), [(10, 3), (2, 4), (9, 3), (1, 1)])
def test_inference_sampler_exact_shards(size, world):
    shards = []
    for rank in range(world):
        with mock.patch(_DIST, return_value=(rank, world)):
            s = InferenceSampler(size)
            shards.append(list(s))
            assert len(s) == len(shards[-1])
    assert sum(shards, []) == list(range(size))  # contiguous, no padding, no duplicates
    sizes = [len(x) for x in shards]
    assert max(sizes) - min(sizes) <= 1


def test_grouped_batch_sampler():
    group_ids = [0, 1, 0, 1, 0, 0, 1]
    sampler = TrainingSampler(7, shuffle=False, seed=0)
    batches = list(itertools.islice(iter(GroupedBatchSampler(sampler, group_ids, 2)), 4))
    assert batches == [[0, 2], [1, 3], [4, 5], [6, 1]]
    with pytest.raises(NotImplementedError):
        len(GroupedBatchSampler(sampler, group_ids, 2))


def test_all_training_samplers_resume():
    def make(start):
        return [
            RepeatFactorTrainingSampler(torch.tensor([1.0, 2.5, 0.3]), seed=9, start=start),
            RandomSubsetTrainingSampler(12, 0.5, seed_shuffle=2, seed_subset=3, start=start),
        ]

    for full_s, resumed_s in zip(make(0), make(17)):
        full = _take(full_s, 40)
        assert _take(resumed_s, 23) == full[17:]
        assert resumed_s.state_dict()["num_yielded"] == 17 + 23

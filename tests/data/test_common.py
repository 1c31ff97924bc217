"""Dataset wrappers: serialized list storage, mapping with retries, iteration, grouping."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch.utils.data as torchdata

from torchdet.data.common import (
    AspectRatioGroupedDataset,
    DataMappingError,
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
)
from torchdet.data.samplers import InferenceSampler


def _records():
    return [
        {"file_name": f"{i}.jpg", "image_id": i, "annotations": [{"bbox": [i, 0, 1, 1]}]}
        for i in range(5)
    ] + [{"file_name": "x.jpg", "image_id": "x", "arr": np.arange(3), "none": None}]


def test_dataset_from_list_round_trip():
    lst = _records()
    ds = DatasetFromList(lst)
    assert len(ds) == len(lst)
    assert isinstance(ds._buffer, np.ndarray) and ds._buffer.dtype == np.uint8
    assert ds._lst is None  # the Python objects are not kept
    for i, rec in enumerate(lst[:-1]):
        assert ds[i] == rec
    last = ds[-1]
    np.testing.assert_array_equal(last["arr"], np.arange(3))
    assert last["none"] is None
    first = ds[0]
    first["annotations"].clear()
    assert ds[0]["annotations"] == [{"bbox": [0, 0, 1, 1]}]  # each read is a fresh copy
    with pytest.raises(IndexError, match="out of range"):
        ds[6]
    assert len(DatasetFromList([])) == 0


def test_dataset_from_list_without_serialization():
    lst = _records()
    ds = DatasetFromList(lst, copy=True, serialize=False)
    assert ds[1] == lst[1] and ds[1] is not lst[1]
    ds2 = DatasetFromList(lst, copy=False, serialize=False)
    assert ds2[1] is lst[1]
    with pytest.raises(TypeError, match="list"):
        DatasetFromList((1, 2))


def test_map_dataset_retries_none(caplog):
    ds = DatasetFromList(list(range(10)))

    def odd_only(x):
        return x * 10 if x % 2 else None

    mapped = MapDataset(ds, odd_only)
    assert mapped[3] == 30
    for i in range(10):
        assert mapped[i] % 20 == 10  # an even index falls back to an odd item

    calls = []

    def fails_four_times(x):
        calls.append(x)
        return None if len(calls) <= 4 else x

    flaky = MapDataset(
        DatasetFromList([{"file_name": f"{i}.png", "image_id": i} for i in range(9)]),
        fails_four_times,
    )
    with caplog.at_level(logging.WARNING, logger="torchdet.data.common"):
        out = flaky[0]
    assert out == calls[-1] and len(calls) == 5  # the 5th attempt (a fallback item) succeeds
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # after the 3rd and the 4th failure
    assert "file_name='0.png', image_id=0" in warnings[0]
    never = MapDataset(DatasetFromList(list(range(3))), lambda x: None)
    with pytest.raises(DataMappingError, match="returned None"):
        never[0]


def test_map_dataset_names_file_on_error():
    ds = DatasetFromList(_records())

    def boom(d):
        raise OSError("disk gone")

    with pytest.raises(
        DataMappingError, match=r"file_name='2.jpg', image_id=2.*OSError: disk gone"
    ):
        MapDataset(ds, boom)[2]


def test_map_iterable_and_to_iterable():
    it_ds = ToIterableDataset(DatasetFromList(list(range(6))), InferenceSampler(6))
    assert list(it_ds) == list(range(6))
    mapped = MapDataset(it_ds, lambda x: None if x == 2 else -x)
    assert isinstance(mapped, torchdata.IterableDataset)
    assert list(mapped) == [0, -1, -3, -4, -5]
    # With 2 workers each takes every other sampler position; the loader restores the order.
    loader = torchdata.DataLoader(it_ds, batch_size=None, num_workers=2)
    assert [int(x) for x in loader] == list(range(6))


def test_aspect_ratio_grouping():
    items = [
        {"width": 10, "height": 5, "id": 0},
        {"width": 5, "height": 10, "id": 1},
        {"width": 10, "height": 5, "id": 2},
        {"width": 5, "height": 5, "id": 3},
        {"width": 10, "height": 5, "id": 4},
    ]
    batches = [[d["id"] for d in b] for b in AspectRatioGroupedDataset(items, 2)]
    # landscape (w > h) in one bucket; portrait and square in the other
    assert batches == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="batch_size"):
        AspectRatioGroupedDataset(items, 0)


def test_pack_for_transfer_round_trip():
    import torch

    from torchdet.data.common import pack_for_transfer, unpack_transferred

    item = {
        "image": torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4),
        "view": torch.arange(12.0).reshape(3, 4).t(),  # non-contiguous
        "mask": torch.tensor([True, False]),
        "bf16": torch.ones(2, dtype=torch.bfloat16),  # no numpy dtype: torch's own pickling
        "nested": [np.arange(3), {"x": 1}],
    }
    out = unpack_transferred(pack_for_transfer(item))
    for key in ("image", "view", "mask", "bf16"):
        assert out[key].dtype == item[key].dtype
        assert torch.equal(out[key], item[key])
    out["image"][0, 0, 0] = 99  # writable, and a copy
    assert item["image"][0, 0, 0] == 0
    np.testing.assert_array_equal(out["nested"][0], np.arange(3))

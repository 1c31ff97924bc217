"""DataLoaderBenchmark / iter_benchmark on a tiny in-memory dataset."""

from __future__ import annotations

import time

import pytest

from torchdet.data.benchmark import DataLoaderBenchmark, iter_benchmark


def test_iter_benchmark_counts_and_times():
    def slow():
        while True:
            time.sleep(0.002)
            yield 1

    avg, times = iter_benchmark(slow(), num_iter=5, warmup=2)
    assert len(times) == 5
    assert 0.002 <= avg < 0.5 and min(times) >= 0.002
    with pytest.raises(ValueError, match="num_iter"):
        iter_benchmark(iter([]), 0)


def test_data_loader_benchmark_stages():
    dicts = [{"file_name": f"{i}.jpg", "image_id": i, "width": 4, "height": 3} for i in range(6)]
    bench = DataLoaderBenchmark(dicts, mapper=lambda d: dict(d, mapped=True), total_batch_size=2)
    assert bench.benchmark_dataset(num_iter=4, warmup=1)["num_steps"] == 4
    assert bench.benchmark_mapper(num_iter=4, warmup=1)["steps_per_s"] > 0
    out = bench.benchmark_workers(num_iter=3, warmup=1)
    assert out["num_steps"] == 3
    assert out["images_per_s"] == pytest.approx(2 * out["steps_per_s"])
    ipc = bench.benchmark_IPC(num_iter=3, warmup=1, num_workers=1)
    assert ipc["num_steps"] == 3

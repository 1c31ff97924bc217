"""EventStorage, HistoryBuffer and the writers."""

import json
import logging

import pytest
import torch

from torchdet.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    HistoryBuffer,
    JSONWriter,
    TensorboardXWriter,
    get_event_storage,
)


def test_get_event_storage_outside_context_raises():
    with pytest.raises(RuntimeError, match="inside a 'with EventStorage"):
        get_event_storage()


def test_nested_storages_and_exit_order():
    with EventStorage(0) as a:
        assert get_event_storage() is a
        with EventStorage(5) as b:
            assert get_event_storage() is b
        assert get_event_storage() is a
    with pytest.raises(RuntimeError):
        get_event_storage()


def test_history_buffer_stats():
    h = HistoryBuffer(max_length=3)
    for i, v in enumerate([1.0, 5.0, 2.0, 10.0]):
        h.update(v, i)
    assert h.latest() == 10.0
    assert h.values() == [(5.0, 1), (2.0, 2), (10.0, 3)]  # the oldest fell off
    assert h.median(2) == 6.0
    assert h.avg(3) == pytest.approx(17.0 / 3)
    assert h.global_avg() == pytest.approx(18.0 / 4)  # over all values, even dropped ones


def test_put_scalar_tensor_prefix_and_smoothing():
    with EventStorage(0) as s:
        for it, v in enumerate([4.0, 1.0, 3.0, 100.0]):
            s.iter = it
            s.put_scalar("loss", torch.tensor(v))
            s.put_scalar("lr", 0.1 * (it + 1), smoothing_hint=False)
            with s.name_scope("rpn"):
                s.put_scalars(num_pos=it)
        assert s.latest()["loss"] == (100.0, 3)
        assert s.history("rpn/num_pos").latest() == 3
        smoothed = s.latest_with_smoothing_hint(window_size=3)
        # median of the values recorded at iterations 1, 2, 3
        assert smoothed["loss"] == (3.0, 3)
        assert smoothed["lr"][0] == pytest.approx(0.4)  # no smoothing hint: the latest value
        with pytest.raises(ValueError, match="one element"):
            s.put_scalar("bad", torch.ones(2))
        with pytest.raises(ValueError, match="smoothing_hint"):
            s.put_scalar("lr", 1.0, smoothing_hint=True)
        with pytest.raises(KeyError, match="never"):
            s.history("never")


def test_smoothing_window_is_in_iterations():
    # A metric logged every 10 iterations: a 20-iteration window holds 2 values, not 20.
    with EventStorage(0) as s:
        for it in range(0, 100, 10):
            s.iter = it
            s.put_scalar("ap", float(it))
        assert s.latest_with_smoothing_hint(20)["ap"] == (85.0, 90)


def test_histogram_and_images():
    with EventStorage(3) as s:
        s.put_histogram("w", torch.tensor([0.0, 1.0, 1.0, 2.0]), bins=2)
        h = s._histograms[0]
        assert h["bucket_counts"] == [1.0, 3.0]
        assert h["num"] == 4 and h["sum"] == 4.0 and h["sum_squares"] == 6.0
        assert h["global_step"] == 3
        s.put_image("img", torch.zeros(3, 2, 2))
        assert len(s._vis_data) == 1
        s.clear_images()
        s.clear_histograms()
        assert s._vis_data == [] and s._histograms == []
        with pytest.raises(ValueError, match="empty"):
            s.put_histogram("e", torch.zeros(0))


def test_json_writer_writes_each_iteration_once(tmp_path):
    path = tmp_path / "metrics.json"
    with EventStorage(0) as s:
        w = JSONWriter(str(path), window_size=2)
        for it in range(3):
            s.iter = it
            s.put_scalar("loss", float(it))
        w.write()
        w.write()  # nothing new: nothing appended
        s.iter = 3
        s.put_scalar("loss", 10.0)
        w.write()
        w.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    # Only the latest value per metric: iteration 2 (median of 1, 2), then iteration 3.
    assert lines == [{"iteration": 2, "loss": 1.5}, {"iteration": 3, "loss": 6.0}]


def test_common_metric_printer(caplog):
    with EventStorage(0) as s:
        printer = CommonMetricPrinter(max_iter=100)
        for it in range(5):
            s.iter = it
            s.put_scalars(total_loss=1.0, loss_cls=0.5, time=2.0, data_time=0.5)
            s.put_scalar("lr", 0.01, smoothing_hint=False)
        with caplog.at_level(logging.INFO, logger="torchdet.utils.events"):
            printer.write()
        msg = caplog.records[-1].getMessage()
        assert "iter: 4" in msg and "loss_cls: 0.5" in msg and "lr: 0.01" in msg
        assert "eta: 0:03:10" in msg  # 2 s/it * (100 - 4 - 1) iterations
        assert s.latest()["eta_seconds"][0] == 190.0


def test_tensorboard_writer_missing_package(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorboardXWriter(str(tmp_path))

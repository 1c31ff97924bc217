"""setup_logger, rate-limited logging and create_small_table."""

import logging

import pytest

from torchdet.utils.logger import (
    create_small_table,
    log_every_n,
    log_every_n_seconds,
    log_first_n,
    setup_logger,
)


def test_create_small_table():
    table = create_small_table({"AP": 40.12345, "AP50": 60.0, "name": "x"})
    lines = table.splitlines()
    assert len(lines) == 3  # header, separator, one row
    assert "AP" in lines[0] and "AP50" in lines[0]
    assert "40.123" in lines[2] and "60.000" in lines[2] and "x" in lines[2]
    assert isinstance(create_small_table({}), str)  # an empty dict is no error
    with pytest.raises(TypeError, match="expected a dict"):
        create_small_table([1, 2])


def test_setup_logger_writes_file_and_rank_suffix(tmp_path):
    log = setup_logger(str(tmp_path), name="td_test_logger_a", color=False)
    log.info("hello file")
    for h in log.handlers:
        h.flush()
    assert "hello file" in (tmp_path / "log.txt").read_text()
    assert log.propagate is False
    # Cached: calling again does not add handlers (which would duplicate every line).
    n = len(log.handlers)
    assert setup_logger(str(tmp_path), name="td_test_logger_a", color=False) is log
    assert len(log.handlers) == n
    # Other ranks: no terminal handler, a per-rank file.
    log_r1 = setup_logger(str(tmp_path / "x.log"), 1, name="td_test_logger_b")
    log_r1.warning("rank one")
    for h in log_r1.handlers:
        h.flush()
    assert len(log_r1.handlers) == 1
    assert "rank one" in (tmp_path / "x.log.rank1").read_text()


def _messages(caplog, name):
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_log_first_n_and_every_n(caplog):
    name = "td_test_rate"
    with caplog.at_level(logging.INFO, logger=name):
        for i in range(5):
            log_first_n(logging.INFO, f"first {i}", n=2, name=name)  # key: the call site
        for _ in range(3):
            log_first_n(logging.INFO, "same msg", n=1, name=name, key="message")
        for i in range(7):
            log_every_n(logging.INFO, f"every {i}", n=3, name=name)
    msgs = _messages(caplog, name)
    assert [m for m in msgs if m.startswith("first")] == ["first 0", "first 1"]
    assert msgs.count("same msg") == 1
    assert [m for m in msgs if m.startswith("every")] == ["every 0", "every 3", "every 6"]
    with pytest.raises(ValueError, match="key"):
        log_first_n(logging.INFO, "x", key="nope")


def test_log_every_n_seconds(caplog, monkeypatch):
    import torchdet.utils.logger as L

    now = [1000.0]
    monkeypatch.setattr(L.time, "time", lambda: now[0])
    name = "td_test_seconds"
    with caplog.at_level(logging.INFO, logger=name):
        for t in (0.0, 0.5, 1.0, 1.2, 2.5):
            now[0] = 1000.0 + t
            log_every_n_seconds(logging.INFO, f"t={t}", n=1, name=name)
    assert _messages(caplog, name) == ["t=0.0", "t=1.0", "t=2.5"]

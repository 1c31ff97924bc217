"""print_csv_format, verify_results, flatten_results_dict."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from torchdet.evaluation import flatten_results_dict, print_csv_format, verify_results


def test_flatten_results_dict():
    res = {"bbox": {"AP": 50.0, "AP-cat": 10.0}, "sem_seg": {"x": {"y": 1}}, "t": 2}
    assert flatten_results_dict(res) == {
        "bbox/AP": 50.0,
        "bbox/AP-cat": 10.0,
        "sem_seg/x/y": 1,
        "t": 2,
    }
    assert flatten_results_dict({}) == {}


def test_print_csv_format_skips_per_category(caplog):
    with caplog.at_level(logging.INFO, logger="torchdet.evaluation.testing"):
        print_csv_format({"bbox": {"AP": 50.0, "AP50": 75.125, "AP-cat": 1.0}})
    text = caplog.text
    assert "copypaste: Task: bbox" in text
    assert "copypaste: AP,AP50" in text
    assert "copypaste: 50.0000,75.1250" in text
    assert "AP-cat" not in text
    with pytest.raises(TypeError):
        print_csv_format([1, 2])


def _cfg(expected):
    return SimpleNamespace(TEST=SimpleNamespace(EXPECTED_RESULTS=expected))


def test_verify_results():
    res = {"bbox": {"AP": 40.0}}
    assert verify_results(_cfg([]), res)
    assert verify_results(_cfg([["bbox", "AP", 40.5, 1.0]]), res)
    with pytest.raises(SystemExit):
        verify_results(_cfg([["bbox", "AP", 42.0, 1.0]]), res)
    with pytest.raises(SystemExit):
        verify_results(_cfg([["segm", "AP", 40.0, 1.0]]), res)
    with pytest.raises(ValueError, match="entries"):
        verify_results(_cfg([["bbox", "AP", 40.0]]), res)

"""Printing, checking and flattening evaluation results."""

from __future__ import annotations

import logging
import pprint
import sys
from collections.abc import Mapping

import numpy as np

__all__ = ["flatten_results_dict", "print_csv_format", "verify_results"]

logger = logging.getLogger(__name__)


def print_csv_format(results: Mapping) -> None:
    """Log ``{task: {metric: value}}`` results as copy-pasteable CSV lines.

    Per-category entries (metric names containing ``-``) are left out, as in Detectron2.

    Args:
        results: an ordered mapping of task name to a mapping of metric name to float.
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"print_csv_format: results must be a mapping, got {type(results)}")
    for task, res in results.items():
        if isinstance(res, Mapping):
            important = [(k, v) for k, v in res.items() if "-" not in k]
            logger.info("copypaste: Task: %s", task)
            logger.info("copypaste: %s", ",".join(k for k, _ in important))
            logger.info("copypaste: %s", ",".join(f"{v:.4f}" for _, v in important))
        else:
            logger.info("copypaste: %s=%s", task, res)


def verify_results(cfg, results: Mapping) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS``.

    Args:
        cfg: a config with ``TEST.EXPECTED_RESULTS``: a list of ``[task, metric, value,
            tolerance]``.
        results: ``{task: {metric: value}}``.

    Returns:
        True when every expected value is met (or nothing is expected). On failure the
        results are logged and the process exits with status 1, as in Detectron2.
    """
    expected_results = cfg.TEST.EXPECTED_RESULTS
    if not len(expected_results):
        return True
    ok = True
    for entry in expected_results:
        if len(entry) != 4:
            raise ValueError(
                f"verify_results: TEST.EXPECTED_RESULTS entries are [task, metric, value, "
                f"tolerance], got {entry!r}"
            )
        task, metric, expected, tolerance = entry
        actual = results.get(task, {}).get(metric)
        if actual is None or not np.isfinite(actual):
            ok = False
            continue
        if abs(actual - expected) > tolerance:
            ok = False
    logger.info("Results verification: %s", "OK" if ok else "FAIL")
    if not ok:
        logger.error("Result verification failed!")
        logger.error("Expected Results: %s", expected_results)
        logger.error("Actual Results: %s", pprint.pformat(results))
        sys.exit(1)
    return ok


def flatten_results_dict(results: Mapping) -> dict:
    """Flatten nested mappings into one level, joining keys with ``/``.

    Example: ``{"bbox": {"AP": 50}}`` -> ``{"bbox/AP": 50}``.
    """
    r: dict = {}
    for k, v in results.items():
        if isinstance(v, Mapping):
            for kk, vv in flatten_results_dict(v).items():
                r[f"{k}/{kk}"] = vv
        else:
            r[k] = v
    return r

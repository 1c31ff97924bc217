"""benchmarks/train_parity.py: argument parsing, metric extraction and the table, on fake results
(no training)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_parity.py"


@pytest.fixture(scope="module")
def tp():
    spec = importlib.util.spec_from_file_location("train_parity", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_args(tp):
    args = tp.parse_args(
        ["--models", "mask_rcnn_R50_FPN", "retinanet_R50_FPN", "--iters-scale", "0.05", "--amp"]
    )
    assert args.models == ["mask_rcnn_R50_FPN", "retinanet_R50_FPN"]
    assert args.iters_scale == 0.05
    assert args.amp is True
    assert args.threads == 0
    assert args.shapes_root  # defaults to the shared shapes split
    assert len(tp.parse_args([]).models) == 8


@pytest.mark.parametrize(
    "argv",
    [["--models", "mask_rcnn_R101"], ["--iters-scale", "0"], ["--threads", "-1"]],
)
def test_parse_args_rejects(tp, argv):
    with pytest.raises((SystemExit, ValueError)):
        tp.parse_args(argv)


def test_main_metrics_and_reference_results(tp):
    ref = {
        "train_iters": 500,
        "eval_shapes_kp_val": {
            "bbox": {"AP": 67.5, "AP50": 90.0},
            "keypoints": {"AP": 58.25, "APl": math.nan},
        },
        "eval_seconds_shapes_kp_val": 51.0,
    }
    name, res = tp.reference_results(ref)
    assert name == "shapes_kp_val"
    assert tp.main_metrics(res) == {"box AP": 67.5, "mask AP": None, "kp AP": 58.25, "PQ": None}
    # NaN metrics (no object of that size) count as absent.
    assert tp.main_metrics({"bbox": {"AP": math.nan}})["box AP"] is None
    with pytest.raises(KeyError, match="eval_"):
        tp.reference_results({"train_iters": 1})


def _row(tp, model, iters, ref_iters, ours_box, ref_box):
    return {
        "model": model,
        "iters": iters,
        "ref_iters": ref_iters,
        "train_seconds": 61.4,
        "ref_train_seconds": 530.7,
        "ours": {"box AP": ours_box, "mask AP": None, "kp AP": None, "PQ": None},
        "ref": {"box AP": ref_box, "mask AP": None, "kp AP": None, "PQ": None},
    }


def test_format_table(tp):
    rows = [
        _row(tp, "retinanet_R50_FPN", 400, 400, 70.0, 71.5),  # within 2 AP
        _row(tp, "mask_rcnn_R50_FPN", 1200, 1200, 60.0, 65.0),  # 5 AP short
        _row(tp, "retinanet_R50_FPN", 20, 400, 10.0, 71.5),  # scaled: no verdict
        _row(tp, "faster_rcnn_R50_FPN", 400, 400, 10.0, 71.5),  # no target
    ]
    text = tp.format_table(rows)
    lines = text.splitlines()
    assert lines[0] == "ours / reference"
    assert "box AP" in lines[1] and "PQ" in lines[1]
    body = lines[3:]
    assert len(body) == 4
    assert "400 / 400" in body[0] and "61 / 531" in body[0] and "70.00 / 71.50" in body[0]
    assert "ok (1.50)" in body[0]
    assert "MISS (5.00)" in body[1]
    assert "n/a (scaled)" in body[2] and "20 / 400" in body[2]
    cells = [c.strip() for c in body[3].split("|")[1:-1]]
    assert cells[4] == "-"  # no mask AP on either side
    assert cells[-1] == "-"  # faster_rcnn has no target

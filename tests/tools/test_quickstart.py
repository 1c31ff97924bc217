"""The quickstart main job: a tiny end-to-end run, and its report helpers."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from torchdet.data.datasets.synthetic import generate_shapes_dataset
from torchdet.tools import quickstart
from torchdet.tools.quickstart import format_metrics_table, plot_training_curve


@pytest.fixture(autouse=True)
def _forget_registered_datasets():
    """Registrations are global: drop the datasets a test registered (other tests use other
    folders under the same names)."""
    from torchdet.data import DatasetCatalog, MetadataCatalog

    before = set(DatasetCatalog.list())
    yield
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


def test_format_metrics_table():
    table = format_metrics_table(
        {"bbox": {"AP": 66.6857, "AP50": 83.9}, "segm": {"AP": 70.8, "APl": math.nan}, "x": {}}
    )
    assert table.splitlines() == [
        "### bbox",
        "",
        "| AP | AP50 |",
        "|:-:|:-:|",
        "| 66.69 | 83.90 |",
        "",
        "### segm",
        "",
        "| AP | APl |",
        "|:-:|:-:|",
        "| 70.80 | nan |",
    ]


def test_plot_training_curve_pixels(tmp_path):
    path = tmp_path / "metrics.json"
    with open(path, "w") as f:
        for it in range(0, 100, 10):
            f.write(json.dumps({"iteration": it, "total_loss": 2.0 - it / 100}) + "\n")
        f.write(json.dumps({"iteration": 99, "segm/AP": 50.0}) + "\n")
    out = tmp_path / "curve.png"
    plot_training_curve(str(path), str(out), width=400, height=300)
    img = cv2.imread(str(out))
    assert img.shape == (300, 400, 3)
    # the AP dot: at the right edge (last iteration), half-way up the plot area
    left, right, top, bottom = 70, 70, 30, 50
    x, y = 400 - right, top + (300 - top - bottom) // 2
    assert tuple(img[y, x - 1]) == quickstart._CURVE_COLORS["segm/AP"]
    # the loss line starts at the top-left of the plot (max loss = 2.0 * 1.05)
    y0 = top + (300 - top - bottom) * (1 - 2.0 / 2.1)
    column = img[int(y0) - 2 : int(y0) + 3, left + 1].astype(int)
    assert (np.abs(column - 40) <= 12).all(axis=1).any()  # total_loss is (40, 40, 40)
    assert (img[top + 150, left + 1] == 255).all()  # far below the line: background
    with open(path, "w") as f:
        f.write(json.dumps({"iteration": 1, "lr": 0.1}) + "\n")
    with pytest.raises(ValueError, match="no loss"):
        plot_training_curve(str(path), str(out))


@pytest.mark.parametrize("num_procs", [1, 2])
def test_quickstart_end_to_end_tiny(tmp_path, monkeypatch, num_procs):
    root = tmp_path / "shapes"
    generate_shapes_dataset(root, 6, split="train", image_size_range=((96, 112), (96, 112)))
    generate_shapes_dataset(root, 2, split="val", image_size_range=((96, 112), (96, 112)))
    monkeypatch.setenv("TORCHDET_SHAPES_DIR", str(root))
    out = tmp_path / "demo"
    rc = quickstart.invoke_main(
        [
            "--output",
            str(out),
            "--num-vis",
            "2",
            "--num-procs",
            str(num_procs),
            "--opts",
            "SOLVER.MAX_ITER",
            "2",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "INPUT.MIN_SIZE_TRAIN",
            "(96,)",
            "INPUT.MIN_SIZE_TEST",
            "96",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["data_root"] == str(root)
    assert summary["num_procs"] == num_procs
    assert set(summary["phases"]) == {"data", "train+eval", "report"}
    # an untrained model may detect nothing: AP is then NaN (bbox) or absent (segm)
    assert "bbox_AP" in summary and "segm_AP" in summary
    md = (out / "metrics.md").read_text()
    assert "### bbox" in md and "| AP |" in md
    grid = cv2.imread(str(out / "predictions.jpg"))
    # two val tiles side by side (padding 4), each as large as the largest val image
    assert grid is not None and grid.shape[0] <= 112 + 8 and grid.shape[1] >= 2 * 96 + 12
    assert cv2.imread(str(out / "training_curve.png")) is not None
    assert (out / "model_final.pth").is_file()
    assert not np.isnan(summary["total_cpu_s"])


def test_quickstart_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHDET_SHAPES_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="TORCHDET_SHAPES_DIR"):
        quickstart.invoke_main(["--output", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="num-threads"):
        quickstart.invoke_main(["--output", str(tmp_path / "o"), "--num-threads", "0"])

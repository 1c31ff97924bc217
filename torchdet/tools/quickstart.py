"""The main job: train and evaluate a small Mask R-CNN on CPU in minutes, and show the results.

    python -m torchdet.tools.quickstart [--config-file F] [--output output/demo] [--opts K V ...]

Steps (each timed, wall and CPU seconds):

1. data: the synthetic "shapes" dataset (``torchdet.data.datasets.synthetic``) is generated into
   ``<output>/data`` (skipped when it is there already), or read from ``$TORCHDET_SHAPES_DIR``,
   and registered as ``shapes_train`` / ``shapes_val``;
2. train: ``DefaultTrainer`` with the packaged config
   ``model_zoo/configs/quickstart/mask_rcnn_R50_FPN_shapes.yaml`` (any config and ``KEY VALUE``
   overrides work the same way); the trainer evaluates on ``DATASETS.TEST`` with
   ``COCOEvaluator`` at the end;
3. report, in ``<output>``: ``metrics.md`` (the COCO tables, also printed), ``predictions.jpg``
   (a grid of val images with boxes, masks, labels and scores, drawn by ``DefaultPredictor`` +
   ``Visualizer``), ``training_curve.png`` (losses and AP against iterations, from
   ``metrics.json``), ``model_final.pth`` and ``summary.json`` (timings and APs).

Every run starts from scratch: an earlier run's ``metrics.json`` and checkpoints in ``<output>``
are replaced.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
import torch

from torchdet.config import CfgNode, get_cfg
from torchdet.data import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.synthetic import generate_shapes_dataset, register_shapes
from torchdet.engine import DefaultPredictor, DefaultTrainer
from torchdet.model_zoo import get_config_file
from torchdet.utils.logger import setup_logger
from torchdet.utils.visualizer import ColorMode, Visualizer

__all__ = [
    "DEFAULT_CONFIG",
    "format_metrics_table",
    "get_parser",
    "invoke_main",
    "main",
    "plot_training_curve",
    "prepare_data",
    "render_prediction_grid",
]

DEFAULT_CONFIG = "quickstart/mask_rcnn_R50_FPN_shapes.yaml"
_NUM_TRAIN, _NUM_VAL = 400, 60  # the sizes of the shared splits the reference trained on
logger = logging.getLogger("torchdet.quickstart")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchdet quickstart",
        description="Train, evaluate and visualize a small Mask R-CNN on synthetic shapes (CPU).",
    )
    p.add_argument(
        "--config-file",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"a config file or model-zoo config name (default: {DEFAULT_CONFIG})",
    )
    p.add_argument("--output", default="output/demo", help="output folder (default output/demo)")
    p.add_argument(
        "--num-threads",
        type=int,
        default=1,
        help="torch threads per training process (default 1: multi-threaded kernels slow down "
        "many times over when the cores are shared, e.g. 16 s instead of 1 s per step)",
    )
    p.add_argument(
        "--num-procs",
        type=int,
        default=2,
        help="training processes (DDP over gloo, --num-threads each; default 2); "
        "SOLVER.IMS_PER_BATCH is split between them. Two one-thread processes with in-process "
        "data loading (DATALOADER.NUM_WORKERS 0) run a step ~1.7x faster than one process on "
        "2 cores",
    )
    p.add_argument("--num-vis", type=int, default=8, help="val images in predictions.jpg")
    p.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        metavar="KEY VALUE",
        help="config overrides, e.g. --opts SOLVER.MAX_ITER 100",
    )
    return p


class _Timer:
    """Wall and CPU seconds (this process and finished children) of named phases."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}

    @staticmethod
    def _cpu() -> float:
        own = time.process_time()
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own + ch.ru_utime + ch.ru_stime

    @contextmanager
    def phase(self, name: str):
        w0, c0 = time.perf_counter(), self._cpu()
        try:
            yield
        finally:
            self.phases[name] = {
                "wall_s": round(time.perf_counter() - w0, 2),
                "cpu_s": round(self._cpu() - c0, 2),
            }
            logger.info(
                "[quickstart] %s: %.1f s wall, %.1f s CPU",
                name,
                self.phases[name]["wall_s"],
                self.phases[name]["cpu_s"],
            )


def prepare_data(output_dir: str) -> str:
    """The shapes root: ``$TORCHDET_SHAPES_DIR`` if set, else ``<output_dir>/data``, generated
    when missing; its splits are registered as ``shapes_train`` / ``shapes_val``.

    Raises:
        FileNotFoundError: ``$TORCHDET_SHAPES_DIR`` lacks ``train/instances.json`` or
            ``val/instances.json``.
    """
    root = os.environ.get("TORCHDET_SHAPES_DIR", "")
    if root:
        for split in ("train", "val"):
            if not os.path.isfile(os.path.join(root, split, "instances.json")):
                raise FileNotFoundError(
                    f"$TORCHDET_SHAPES_DIR={root}: {split}/instances.json not found; unset the "
                    "variable to generate the dataset"
                )
    else:
        root = os.path.join(output_dir, "data")
        for split, n in (("train", _NUM_TRAIN), ("val", _NUM_VAL)):
            if not os.path.isfile(os.path.join(root, split, "instances.json")):
                logger.info("[quickstart] generating %d %s images into %s", n, split, root)
                generate_shapes_dataset(root, n, seed=0, split=split)
    register_shapes(root)
    return root


def build_config(config_file: str, opts: Sequence[str], output_dir: str) -> CfgNode:
    """``get_cfg()`` + the config file (a path or a model-zoo name) + overrides."""
    if not os.path.isfile(config_file):
        config_file = get_config_file(config_file)
    if len(opts) % 2:
        raise ValueError(f"--opts takes KEY VALUE pairs, got an odd number: {list(opts)}")
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    return cfg


def format_metrics_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table per task (``bbox``, ``segm``, ...) of COCO metrics (AP in 0-100).

    Args:
        results: ``{"bbox": {"AP": 66.7, "AP50": ...}, "segm": {...}}``.
    """
    lines = []
    for task, metrics in results.items():
        if not isinstance(metrics, dict) or not metrics:
            continue
        keys = list(metrics)
        lines.append(f"### {task}")
        lines.append("")
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "|".join(":-:" for _ in keys) + "|")
        vals = [
            "nan" if (isinstance(v, float) and math.isnan(v)) else f"{float(v):.2f}"
            for v in metrics.values()
        ]
        lines.append("| " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def _read_metrics(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


_CURVE_COLORS = {  # BGR
    "total_loss": (40, 40, 40),
    "loss_cls": (180, 119, 31),
    "loss_box_reg": (14, 127, 255),
    "loss_mask": (44, 160, 44),
    "loss_rpn_cls": (40, 39, 214),
    "loss_rpn_loc": (189, 103, 148),
    "bbox/AP": (75, 86, 140),
    "segm/AP": (194, 119, 227),
}


def plot_training_curve(
    metrics_json: str, out_path: str, *, width: int = 900, height: int = 480
) -> None:
    """Draw the losses (left axis) and the APs (right axis, 0-100) against the iteration.

    Args:
        metrics_json: the trainer's ``metrics.json`` (one JSON object per line).
        out_path: the picture to write (PNG or JPEG).

    Raises:
        ValueError: the file has no loss to plot.
    """
    records = _read_metrics(metrics_json)
    loss_keys = [k for k in _CURVE_COLORS if not k.endswith("/AP")]
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in _CURVE_COLORS:
        pts = [
            (r["iteration"], r[key])
            for r in records
            if "iteration" in r and isinstance(r.get(key), int | float) and math.isfinite(r[key])
        ]
        if pts:
            arr = np.asarray(pts, dtype=np.float64)
            series[key] = (arr[:, 0], arr[:, 1])
    if not any(k in series for k in loss_keys):
        raise ValueError(f"plot_training_curve: no loss in {metrics_json}")
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 70, 70, 30, 50
    pw, ph = width - left - right, height - top - bottom
    max_iter = max(float(x.max()) for x, _ in series.values())
    max_iter = max(max_iter, 1.0)
    max_loss = max(float(y.max()) for k, (_, y) in series.items() if k in loss_keys)
    max_loss = max(max_loss * 1.05, 1e-6)

    def to_px(x: np.ndarray, y: np.ndarray, y_max: float) -> np.ndarray:
        px = left + x / max_iter * pw
        py = top + ph - np.clip(y / y_max, 0, 1) * ph
        return np.stack([px, py], axis=1)

    font = cv2.FONT_HERSHEY_SIMPLEX
    grey = (200, 200, 200)
    for i in range(6):  # grid and tick labels
        y = top + ph - i * ph / 5
        cv2.line(img, (left, int(y)), (left + pw, int(y)), grey, 1)
        cv2.putText(img, f"{max_loss * i / 5:.2f}", (8, int(y) + 4), font, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{20 * i}", (left + pw + 8, int(y) + 4), font, 0.4, (0, 0, 0), 1)
        x = left + i * pw / 5
        cv2.line(img, (int(x), top), (int(x), top + ph), grey, 1)
        label = f"{max_iter * i / 5:.0f}"
        cv2.putText(img, label, (int(x) - 10, top + ph + 18), font, 0.4, (0, 0, 0), 1)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    cv2.putText(img, "iteration", (left + pw // 2 - 30, height - 12), font, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "loss", (8, 20), font, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "AP", (left + pw + 8, 20), font, 0.5, (0, 0, 0), 1)
    legend_y = top + 16
    for key, color in _CURVE_COLORS.items():
        if key not in series:
            continue
        x, y = series[key]
        is_ap = key.endswith("/AP")
        pts = to_px(x, y, 100.0 if is_ap else max_loss)
        poly = np.rint(pts * 16).astype(np.int32)
        thickness = 2 if key in ("total_loss",) or is_ap else 1
        if len(poly) > 1:
            cv2.polylines(img, [poly], False, color, thickness, cv2.LINE_AA, 4)
        if is_ap or len(poly) == 1:
            for p in poly:
                cv2.circle(img, tuple(int(v) for v in p), 5 * 16, color, -1, cv2.LINE_AA, 4)
            last = f"{key} {y[-1]:.1f}"
        else:
            last = key
        cv2.line(img, (left + pw - 170, legend_y - 4), (left + pw - 150, legend_y - 4), color, 2)
        cv2.putText(img, last, (left + pw - 145, legend_y), font, 0.45, color, 1, cv2.LINE_AA)
        legend_y += 18
    if not cv2.imwrite(out_path, img):
        raise OSError(f"plot_training_curve: could not write {out_path}")


def render_prediction_grid(
    cfg: CfgNode,
    dataset_name: str,
    out_path: str,
    *,
    num_images: int = 8,
    columns: int = 4,
    score_threshold: float = 0.5,
) -> None:
    """Run ``DefaultPredictor(cfg)`` on the first val images and tile the drawings.

    Args:
        cfg: a config whose ``MODEL.WEIGHTS`` holds the trained model.
        dataset_name: a registered dataset (its metadata names the classes).
        out_path: the JPEG/PNG to write.
    """
    dicts = DatasetCatalog.get(dataset_name)[:num_images]
    if not dicts:
        raise ValueError(f"render_prediction_grid: dataset {dataset_name!r} is empty")
    predictor = DefaultPredictor(cfg)
    meta = MetadataCatalog.get(dataset_name)
    tiles = []
    for d in dicts:
        img = cv2.imread(d["file_name"])
        if img is None:
            raise FileNotFoundError(f"render_prediction_grid: cannot read {d['file_name']}")
        instances = predictor(img)["instances"].to("cpu")
        instances = instances[instances.scores >= score_threshold]
        vis = Visualizer(img[:, :, ::-1], meta, instance_mode=ColorMode.IMAGE)
        tiles.append(vis.draw_instance_predictions(instances).get_image())
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    columns = min(columns, len(tiles))
    rows = (len(tiles) + columns - 1) // columns
    pad = 4
    grid = np.full((rows * (th + pad) + pad, columns * (tw + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        grid[y : y + t.shape[0], x : x + t.shape[1]] = t
    if not cv2.imwrite(out_path, grid[:, :, ::-1]):
        raise OSError(f"render_prediction_grid: could not write {out_path}")


def _train_worker(
    config_file: str, opts: list[str], output: str, data_root: str, num_threads: int
) -> None:
    """Train and evaluate in one process (of ``launch``); rank 0 writes ``results.json``."""
    from torchdet.utils import comm

    torch.set_num_threads(num_threads)
    if not logging.getLogger("torchdet").handlers:
        setup_logger(output=os.path.join(output, "log.txt"), distributed_rank=comm.get_rank())
    register_shapes(data_root)  # spawned processes start with empty catalogs
    cfg = build_config(config_file, opts, output)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train() or {}
    if comm.is_main_process():
        if len(cfg.DATASETS.TEST) > 1:  # keep the first dataset's tables
            results = results.get(cfg.DATASETS.TEST[0], {})
        if not os.path.isfile(os.path.join(output, "model_final.pth")):
            trainer.checkpointer.save("model_final")
        with open(os.path.join(output, "results.json"), "w") as f:
            json.dump(results, f)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the main job; returns the summary written to ``<output>/summary.json``."""
    output = args.output
    os.makedirs(output, exist_ok=True)
    setup_logger(output=os.path.join(output, "log.txt"))
    setup_logger(name="torchdet.quickstart")
    if args.num_threads < 1:
        raise ValueError(f"--num-threads must be >= 1, got {args.num_threads}")
    torch.set_num_threads(args.num_threads)
    timer = _Timer()
    t_all = time.perf_counter()
    c_all = _Timer._cpu()

    with timer.phase("data"):
        root = prepare_data(output)
    cfg = build_config(args.config_file, args.opts, output)
    # a fresh run: no resuming from, or appending to, an earlier run's files
    for name in ("metrics.json", "last_checkpoint", "model_final.pth", "results.json"):
        path = os.path.join(output, name)
        if os.path.exists(path):
            os.remove(path)

    if args.num_procs < 1:
        raise ValueError(f"--num-procs must be >= 1, got {args.num_procs}")
    with timer.phase("train+eval"):
        from torchdet.engine import launch

        worker_args = (args.config_file, list(args.opts), output, root, args.num_threads)
        launch(_train_worker, args.num_procs, dist_url="auto", args=worker_args)
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    model_path = os.path.join(output, "model_final.pth")

    with timer.phase("report"):
        table = format_metrics_table(results)
        header = f"# torchdet quickstart: {os.path.basename(args.config_file)}\n\n"
        with open(os.path.join(output, "metrics.md"), "w") as f:
            f.write(header + table)
        print(header + table)
        metrics_json = os.path.join(output, "metrics.json")
        if os.path.isfile(metrics_json):
            plot_training_curve(metrics_json, os.path.join(output, "training_curve.png"))
        vis_cfg = cfg.clone()
        vis_cfg.defrost()
        vis_cfg.MODEL.WEIGHTS = model_path
        if len(cfg.DATASETS.TEST) and args.num_vis > 0:
            render_prediction_grid(
                vis_cfg,
                cfg.DATASETS.TEST[0],
                os.path.join(output, "predictions.jpg"),
                num_images=args.num_vis,
            )

    summary = {
        "config_file": args.config_file,
        "opts": list(args.opts),
        "data_root": root,
        "iterations": int(cfg.SOLVER.MAX_ITER),
        "ims_per_batch": int(cfg.SOLVER.IMS_PER_BATCH),
        "num_threads": args.num_threads,
        "num_procs": args.num_procs,
        "phases": timer.phases,
        "total_wall_s": round(time.perf_counter() - t_all, 2),
        "total_cpu_s": round(_Timer._cpu() - c_all, 2),
        "bbox_AP": results.get("bbox", {}).get("AP"),
        "segm_AP": results.get("segm", {}).get("AP"),
    }
    with open(os.path.join(output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    logger.info(
        "[quickstart] done in %.0f s wall (%.0f s CPU): box AP %s, mask AP %s; outputs in %s",
        summary["total_wall_s"],
        summary["total_cpu_s"],
        summary["bbox_AP"],
        summary["segm_AP"],
        output,
    )
    return summary


def invoke_main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchdet quickstart`` and ``python -m torchdet.tools.quickstart``."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)
    main(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(invoke_main())

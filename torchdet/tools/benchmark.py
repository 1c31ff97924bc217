"""Benchmark training, inference or data loading of a config (Detectron2's
``tools/benchmark.py``).

    torchdet benchmark --config-file cfg.yaml --task train [--max-iter 100] [KEY VALUE ...]

Tasks: ``train`` (seconds per iteration of the full training step on real data), ``eval``
(seconds per image of inference, on batches cached in memory), ``data`` (seconds per batch of
the train loader).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from typing import Any

import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import CfgNode
from torchdet.data import build_detection_test_loader, build_detection_train_loader
from torchdet.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    hooks,
    launch,
)
from torchdet.modeling import build_model
from torchdet.solver import build_optimizer
from torchdet.utils import comm
from torchdet.utils.events import CommonMetricPrinter
from torchdet.utils.logger import setup_logger

from .common import add_dataset_arguments, load_config, register_datasets

__all__ = ["benchmark_data", "benchmark_eval", "benchmark_train", "get_parser", "invoke_main"]

logger = logging.getLogger("torchdet.tools.benchmark")


def get_parser() -> argparse.ArgumentParser:
    parser = add_dataset_arguments(default_argument_parser())
    parser.add_argument("--task", choices=["train", "eval", "data"], required=True)
    parser.add_argument("--max-iter", type=int, default=100, help="iterations to time")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first iterations")
    parser.add_argument("--json", default="", metavar="FILE", help="also write results here")
    return parser


def setup(args: argparse.Namespace) -> CfgNode:
    register_datasets(args)
    cfg = load_config(args, freeze=False)
    cfg.SOLVER.BASE_LR = 0.001  # a stable LR for timing; the value does not change the cost
    cfg.freeze()
    setup_logger(distributed_rank=comm.get_rank())
    return cfg


def _summary(name: str, times: list[float], unit: str) -> dict[str, Any]:
    t = torch.tensor(times, dtype=torch.float64)
    res = {
        "task": name,
        "iterations": len(times),
        f"mean_{unit}": float(t.mean()) if len(times) else float("nan"),
        f"median_{unit}": float(t.median()) if len(times) else float("nan"),
    }
    logger.info("%s: %s", name, res)
    return res


def benchmark_data(cfg: CfgNode, max_iter: int, warmup: int) -> dict[str, Any]:
    """Seconds per batch of the train loader."""
    loader = build_detection_train_loader(cfg)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    times = []
    for _ in range(max_iter):
        start = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - start)
    return _summary("data", times, "s_per_batch")


def benchmark_train(cfg: CfgNode, max_iter: int, warmup: int) -> dict[str, Any]:
    """Seconds per training iteration (data loading included) and peak memory."""
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    loader = build_detection_train_loader(cfg)
    trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
    trainer = trainer_cls(model, loader, optimizer)
    times: list[float] = []

    def before(t):
        t._bench_start = time.perf_counter()

    def after(t):
        if t.iter >= warmup:
            times.append(time.perf_counter() - t._bench_start)

    trainer.register_hooks(
        [
            hooks.CallbackHook(before_step=before, after_step=after),
            hooks.IterationTimer(),
            hooks.PeriodicWriter([CommonMetricPrinter(max_iter + warmup)], period=20),
        ]
    )
    trainer.train(0, max_iter + warmup)
    res = _summary("train", times, "s_per_iter")
    if torch.cuda.is_available():
        res["peak_cuda_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


@torch.no_grad()
def benchmark_eval(cfg: CfgNode, max_iter: int, warmup: int) -> dict[str, Any]:
    """Seconds per batch of inference on test batches held in memory (no data loading)."""
    model = build_model(cfg)
    model.eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    batches = list(itertools.islice(loader, 20))
    if not batches:
        raise ValueError(f"test dataset {cfg.DATASETS.TEST[0]} is empty")
    stream = itertools.cycle(batches)
    for _ in range(warmup):
        model(next(stream))
    times = []
    for _ in range(max_iter):
        batch = next(stream)
        start = time.perf_counter()
        model(batch)
        times.append(time.perf_counter() - start)
    return _summary("eval", times, "s_per_batch")


def main(args: argparse.Namespace) -> dict[str, Any]:
    cfg = setup(args)
    fn = {"train": benchmark_train, "eval": benchmark_eval, "data": benchmark_data}[args.task]
    res = fn(cfg, args.max_iter, args.warmup)
    if args.json and comm.is_main_process():
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


def invoke_main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(invoke_main())

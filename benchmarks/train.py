"""Training speed of the parity Mask R-CNN (``models/mask_rcnn_R50_FPN/config.yaml``: ResNet-50
with 16 bottleneck channels at res2, FPN 64) on the shapes train split, batch 4: seconds per
iteration and peak memory, ours against the reference (Detectron2 v0.6 on this kind of machine,
``metrics.json`` per-iteration ``time``, ``results.json`` ``train_seconds / train_iters``).

The model trains with BatchNorm, as the reference did (the config file holds the deployed,
FrozenBN-folded form). The loader is the config's: 1 worker, aspect-ratio grouping.

Where other jobs share the CPUs, wall-clock times overstate ours; the table also gives the
process's CPU seconds per iteration divided by the threads in use (an estimate for an idle
machine). ``--profile N`` profiles N iterations with ``torch.profiler`` and prints the
operators that take the most time, and the share of the step per phase.

    .venv/bin/python benchmarks/train.py --iters 30 --out output/train_timings.json
    .venv/bin/python benchmarks/train.py --iters 5 --profile 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import time
from pathlib import Path

import torch
from tabulate import tabulate

from torchdet.config import get_cfg
from torchdet.data import build_detection_train_loader
from torchdet.data.datasets.synthetic import register_shapes
from torchdet.engine import AMPTrainer, SimpleTrainer, hooks
from torchdet.modeling import build_model
from torchdet.solver import build_lr_scheduler, build_optimizer
from torchdet.utils.env import seed_all_rng

ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    return Path(os.environ.get("TORCHDET_SHARED_DIR", ROOT.parent / "shared"))


def build_cfg(args: argparse.Namespace):
    shared = _shared()
    register_shapes(shared / "data" / "shapes")
    cfg = get_cfg()
    cfg.merge_from_file(str(shared / "parity" / "models" / "mask_rcnn_R50_FPN" / "config.yaml"))
    cfg.MODEL.RESNETS.NORM = "BN"  # as the reference trained
    cfg.SOLVER.IMS_PER_BATCH = args.batch
    cfg.DATALOADER.NUM_WORKERS = args.workers
    cfg.SOLVER.AMP.ENABLED = args.amp
    cfg.SEED = 0
    cfg.freeze()
    return cfg


def reference_times() -> dict:
    ref_dir = _shared() / "parity" / "models" / "mask_rcnn_R50_FPN"
    results = json.loads((ref_dir / "results.json").read_text())
    lines = [json.loads(x) for x in (ref_dir / "metrics.json").read_text().splitlines()]
    times = [d["time"] for d in lines if "time" in d]
    data_times = [d["data_time"] for d in lines if "data_time" in d]
    return {
        "median_s_per_iter": statistics.median(times),
        "median_data_s_per_iter": statistics.median(data_times),
        "overall_s_per_iter": results["train_seconds"] / results["train_iters"],
    }


class _Timer(hooks.HookBase):
    """Per-iteration wall and CPU seconds after ``warmup`` iterations."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def before_step(self) -> None:
        self._w, self._c = time.perf_counter(), time.process_time()

    def after_step(self) -> None:
        if self.trainer.iter >= self.warmup:
            self.wall.append(time.perf_counter() - self._w)
            self.cpu.append(time.process_time() - self._c)


# Phase -> the profiler keys (operators) whose self CPU time it takes; the first match wins.
_PHASES = {
    "convolution fwd+bwd": (
        "aten::convolution_backward",
        "aten::mkldnn_convolution",
        "aten::_convolution",
        "aten::thnn_conv2d",
        "aten::_slow_conv2d_forward",
        "aten::_slow_conv2d_backward",
    ),
    "batch norm fwd+bwd": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "RoIAlign fwd+bwd (embedding_bag)": (
        "aten::_embedding_bag",
        "aten::_embedding_bag_forward_only",
        "aten::_embedding_bag_dense_backward",
        "aten::_embedding_bag_backward",
    ),
    "copies (layout / dtype)": ("aten::copy_", "aten::clone", "aten::contiguous"),
    "elementwise add (residuals, grads)": ("aten::add_", "aten::add"),
    "sort / topk": ("aten::sort", "aten::topk", "aten::argsort"),
    "indexing / nonzero": ("aten::index", "aten::nonzero", "aten::_index_put_impl_"),
    "matmul (box head fc)": ("aten::mm", "aten::addmm"),
}


def _phase_table(prof) -> list[tuple[str, float]]:
    """Self CPU time of the step grouped by phase (percent of the total)."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    out = []
    for name, keys in _PHASES.items():
        t = sum(e.self_cpu_time_total for e in events if e.key in keys)
        out.append((name, 100.0 * t / total))
    out.append(("other", 100.0 - sum(v for _, v in out)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iters", type=int, default=30, help="timed iterations")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (AMPTrainer)")
    p.add_argument("--profile", type=int, default=0, help="profile this many iterations")
    p.add_argument("--trace", default="", help="write the profile's Chrome trace here")
    p.add_argument("--out", default="", help="write the results as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    cfg = build_cfg(args)
    seed_all_rng(0)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    loader = build_detection_train_loader(cfg)
    trainer = (AMPTrainer if args.amp else SimpleTrainer)(model, loader, optimizer)
    timer = _Timer(args.warmup)
    trainer.register_hooks(
        [timer, hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer))]
    )
    start = time.perf_counter()
    trainer.train(0, args.warmup + args.iters)
    total = time.perf_counter() - start
    data_times = [v for v, i in trainer.storage.history("data_time").values() if i >= args.warmup]

    ref = reference_times()
    ours = statistics.median(timer.wall)
    cpu_est = statistics.median(timer.cpu) / args.threads
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {
        "config": f"models/mask_rcnn_R50_FPN (BN), shapes_train, batch {args.batch}",
        "threads": args.threads,
        "workers": args.workers,
        "amp": args.amp,
        "iters": args.iters,
        "median_s_per_iter": ours,
        "mean_s_per_iter": statistics.mean(timer.wall),
        "cpu_bound_estimate_s_per_iter": cpu_est,
        "median_data_s_per_iter": statistics.median(data_times) if data_times else None,
        "wall_seconds_total": total,
        "peak_rss_mb": peak_rss_mb,
        "reference": ref,
        "ratio_vs_reference_median": ours / ref["median_s_per_iter"],
        "est_minutes_1200_iters": ours * 1200 / 60,
    }
    if torch.cuda.is_available():
        res["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    rows = [
        (
            "s / iter (median)",
            f"{ours:.3f}",
            f"{ref['median_s_per_iter']:.3f}",
            f"{res['ratio_vs_reference_median']:.2f}x",
        ),
        (
            "s / iter (CPU-bound estimate)",
            f"{cpu_est:.3f}",
            "",
            f"{cpu_est / ref['median_s_per_iter']:.2f}x",
        ),
        (
            "data s / iter (median)",
            f"{res['median_data_s_per_iter']:.3f}",
            f"{ref['median_data_s_per_iter']:.3f}",
            "",
        ),
        (
            "1200 iterations (min)",
            f"{res['est_minutes_1200_iters']:.1f}",
            f"{ref['overall_s_per_iter'] * 1200 / 60:.1f}",
            "",
        ),
        ("peak RSS (MB)", f"{peak_rss_mb:.0f}", "", ""),
    ]
    print(tabulate(rows, headers=["", "torchdet", "reference", "ratio"], tablefmt="github"))

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            trainer.train(trainer.iter, trainer.iter + args.profile)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        phases = _phase_table(prof)
        print(tabulate(phases, headers=["phase", "% of self CPU time"], floatfmt=".1f"))
        res["profile_phases_percent"] = dict(phases)
        if args.trace:
            prof.export_chrome_trace(args.trace)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

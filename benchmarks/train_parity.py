"""Training parity: train the 8 parity models of ``parity/models/*`` the way the reference did,
evaluate them on the shapes val split, and compare training time and accuracy with the
reference's ``results.json`` (Detectron2 v0.6 on a CPU machine).

For each model: ``get_cfg()`` merged with its ``config.yaml``, trained by
``torchdet.engine.DefaultTrainer`` on the config's ``DATASETS.TRAIN`` for ``train_iters`` (from
``results.json``) iterations, times ``--iters-scale`` (the LR steps and warm-up are scaled with
it), then evaluated on ``DATASETS.TEST`` with the dataset's evaluators (COCO; for Panoptic FPN
COCO + semantic + panoptic, as Detectron2's ``tools/train_net.py``).

Choices, and why:

- Norm: the reference trained with **BatchNorm** and folded it into FrozenBN afterwards (parity
  README, models section); ``config.yaml`` holds the deployed form (``MODEL.RESNETS.NORM:
  FrozenBN``), so we set ``MODEL.RESNETS.NORM = "BN"`` for training. The config's other norms
  (FPN, heads) are empty in both. ``FREEZE_AT`` is 0, so every stage trains.
- Init: ``mask_rcnn_R50_FPN`` trains from scratch; the seven models whose ``results.json`` says
  ``init: mask_rcnn_R50_FPN`` start from ``models/mask_rcnn_R50_FPN/model_final.pth``, loaded by
  ``DetectionCheckpointer`` (parameters of another shape are skipped). For the C4 and DC5
  models (plain ResNet backbone) the checkpoint's ``backbone.bottom_up.*`` keys are first renamed
  to the plain-ResNet names (``backbone.*``; C4's ``res5`` lives in ``roi_heads.res5``) and
  written to ``<output-dir>/<model>/init.pth``.
- Datasets: registered by ``torchdet.tools.common.register_datasets`` (``--shapes-root``). It
  names the keypoint splits ``shapes_kpt_*``; the keypoint config says ``shapes_kp_*`` (the
  reference's names), so those two names are mapped.
- Timing: ``train s`` is the wall time of ``trainer.train()`` without evaluation (the end of
  training evaluation hook is dropped; evaluation is timed separately). On a shared machine
  wall times overstate ours; ``--threads 1`` avoids the slowdown of intra-op threads that wait
  for each other there. ``--amp`` enables ``SOLVER.AMP.ENABLED`` with autocast in bfloat16 (also
  on CUDA, where ``AMPTrainer`` would default to float16).

Targets (issue): within 2 AP of the reference for Mask R-CNN, RetinaNet and Keypoint R-CNN at
full length (``--iters-scale 1``); the table's ``target`` column says whether they are met.

    .venv/bin/python benchmarks/train_parity.py --out output/train_parity.json
    .venv/bin/python benchmarks/train_parity.py --iters-scale 0.05 \\
        --models mask_rcnn_R50_FPN retinanet_R50_FPN
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]

MODELS = [
    "mask_rcnn_R50_FPN",
    "faster_rcnn_R50_FPN",
    "retinanet_R50_FPN",
    "keypoint_rcnn_R50_FPN",
    "cascade_mask_rcnn_R50_FPN",
    "mask_rcnn_R50_C4",
    "mask_rcnn_R50_DC5",
    "panoptic_fpn_R50",
]
#: Models with an accuracy target (issue): max |ours - reference| over their main metrics.
TARGET_MODELS = {"mask_rcnn_R50_FPN", "retinanet_R50_FPN", "keypoint_rcnn_R50_FPN"}
TARGET_AP = 2.0
#: Table metric -> (evaluator task, metric key).
METRICS = {
    "box AP": ("bbox", "AP"),
    "mask AP": ("segm", "AP"),
    "kp AP": ("keypoints", "AP"),
    "PQ": ("panoptic_seg", "PQ"),
}
# register_shapes names the keypoint splits shapes_kpt_*, the reference shapes_kp_*.
_DATASET_ALIASES = {"shapes_kp_train": "shapes_kpt_train", "shapes_kp_val": "shapes_kpt_val"}


def _shared() -> Path:
    return Path(os.environ.get("TORCHDET_SHARED_DIR", ROOT.parent / "shared"))


def get_parser() -> argparse.ArgumentParser:
    """The command line (``--shapes-root`` comes from ``torchdet.tools.common``)."""
    from torchdet.tools.common import add_dataset_arguments

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, metavar="NAME")
    parser.add_argument(
        "--iters-scale",
        type=float,
        default=1.0,
        help="train for round(train_iters * SCALE) iterations (e.g. 0.1 for a quick run)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: keep)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 autocast)")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument(
        "--parity-dir", default=str(_shared() / "parity" / "models"), help="reference models"
    )
    parser.add_argument(
        "--output-dir",
        default=str(ROOT / "output" / "train_parity"),
        help="trainer OUTPUT_DIR root (one folder per model)",
    )
    add_dataset_arguments(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; ``--shapes-root`` defaults to the shared split."""
    args = get_parser().parse_args(argv)
    if not args.iters_scale > 0:
        raise ValueError(f"--iters-scale must be > 0, got {args.iters_scale}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if not args.shapes_root:
        args.shapes_root = str(_shared() / "data" / "shapes")
    return args


def main_metrics(results: dict[str, Any]) -> dict[str, float | None]:
    """The table's metrics from one dataset's evaluation results.

    Args:
        results: evaluator task (``"bbox"``, ``"segm"``, ...) -> metric name -> value.

    Returns:
        Table metric name -> value (AP / PQ in 0-100), None where the task is absent.
    """
    out: dict[str, float | None] = {}
    for name, (task, key) in METRICS.items():
        value = results.get(task, {}).get(key)
        out[name] = None if value is None or math.isnan(value) else float(value)
    return out


def reference_results(results_json: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The evaluated dataset name and its metric dicts from a reference ``results.json``.

    Raises:
        KeyError: when there is not exactly one ``eval_<dataset>`` entry.
    """
    names = [k for k, v in results_json.items() if k.startswith("eval_") and isinstance(v, dict)]
    if len(names) != 1:
        raise KeyError(f"results.json: expected one eval_<dataset> entry, found {names}")
    return names[0][len("eval_") :], results_json[names[0]]


def _check_target(row: dict[str, Any]) -> str:
    if row["model"] not in TARGET_MODELS:
        return "-"
    if row["iters"] != row["ref_iters"]:
        return "n/a (scaled)"
    deltas = [
        abs(row["ours"][m] - row["ref"][m])
        for m in METRICS
        if row["ours"].get(m) is not None and row["ref"].get(m) is not None
    ]
    if not deltas:
        return "no metric"
    return ("ok" if max(deltas) <= TARGET_AP else "MISS") + f" ({max(deltas):.2f})"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table: one line per model, ``ours / reference`` per column.

    Args:
        rows: dicts with ``model``, ``iters``, ``ref_iters``, ``train_seconds``,
            ``ref_train_seconds`` and ``ours`` / ``ref`` (metric name -> value or None).
    """

    def pair(a: float | None, b: float | None, fmt: str = ".1f") -> str:
        if a is None and b is None:
            return "-"
        left = "-" if a is None else format(a, fmt)
        right = "-" if b is None else format(b, fmt)
        return f"{left} / {right}"

    table = []
    for r in rows:
        line = [
            r["model"],
            f"{r['iters']} / {r['ref_iters']}",
            pair(r["train_seconds"], r["ref_train_seconds"], ".0f"),
        ]
        line += [pair(r["ours"].get(m), r["ref"].get(m), ".2f") for m in METRICS]
        line.append(_check_target(r))
        table.append(line)
    headers = ["model", "iters", "train s"] + list(METRICS) + [f"target (<= {TARGET_AP} AP)"]
    return "ours / reference\n" + tabulate(table, headers=headers, tablefmt="github")


def _trainer_class():
    from torchdet.data import MetadataCatalog
    from torchdet.engine import DefaultTrainer, hooks
    from torchdet.evaluation import (
        COCOEvaluator,
        COCOPanopticEvaluator,
        DatasetEvaluators,
        SemSegEvaluator,
    )

    class ParityTrainer(DefaultTrainer):
        """``DefaultTrainer`` without the end-of-training evaluation (timed apart) and with
        the evaluators of Detectron2's ``tools/train_net.py`` (panoptic included)."""

        def __init__(self, cfg):
            super().__init__(cfg)
            if cfg.SOLVER.AMP.ENABLED:
                # --amp means bfloat16 on every device (AMPTrainer picks fp16 on CUDA).
                self._trainer.precision = torch.bfloat16
                self._trainer.grad_scaler = None

        def build_hooks(self):
            return [h for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]

        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            if output_folder is None:
                output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
            kind = MetadataCatalog.get(dataset_name).evaluator_type
            evaluators = []
            if kind in ("sem_seg", "coco_panoptic_seg"):
                evaluators.append(SemSegEvaluator(dataset_name, output_dir=output_folder))
            if kind in ("coco", "coco_panoptic_seg"):
                evaluators.append(
                    COCOEvaluator(
                        dataset_name,
                        output_dir=output_folder,
                        kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS,
                    )
                )
            if kind == "coco_panoptic_seg":
                evaluators.append(COCOPanopticEvaluator(dataset_name, output_folder))
            if not evaluators:
                return super().build_evaluator(cfg, dataset_name, output_folder)
            return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    return ParityTrainer


def _plain_resnet_init(src: Path, dst: Path, *, res5_in_roi_heads: bool) -> None:
    """Rename the FPN checkpoint's backbone to plain-ResNet keys (C4 / DC5 initialisation)."""
    state = torch.load(src, map_location="cpu", weights_only=True)["model"]
    out = {}
    for k, v in state.items():
        if k.startswith("backbone.bottom_up."):
            rest = k[len("backbone.bottom_up.") :]
            prefix = "roi_heads." if res5_in_roi_heads and rest.startswith("res5.") else "backbone."
            out[prefix + rest] = v
        elif not k.startswith("backbone."):  # FPN lateral/output convs have no counterpart
            out[k] = v
    torch.save({"model": out}, dst)


def build_cfg(name: str, args: argparse.Namespace, ref: dict[str, Any]):
    """The training config of model ``name`` (see the module docstring)."""
    from torchdet.config import get_cfg

    model_dir = Path(args.parity_dir) / name
    cfg = get_cfg()
    cfg.merge_from_file(str(model_dir / "config.yaml"))
    cfg.MODEL.RESNETS.NORM = "BN"  # as the reference trained (folded to FrozenBN afterwards)
    iters = max(1, round(ref["train_iters"] * args.iters_scale))
    scale = iters / cfg.SOLVER.MAX_ITER
    cfg.SOLVER.MAX_ITER = iters
    cfg.SOLVER.STEPS = tuple(max(1, round(s * scale)) for s in cfg.SOLVER.STEPS)
    cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, max(0, iters // 2))
    cfg.SOLVER.AMP.ENABLED = bool(args.amp)
    cfg.DATASETS.TRAIN = tuple(_DATASET_ALIASES.get(d, d) for d in cfg.DATASETS.TRAIN)
    cfg.DATASETS.TEST = tuple(_DATASET_ALIASES.get(d, d) for d in cfg.DATASETS.TEST)
    out_dir = Path(args.output_dir) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.MODEL.WEIGHTS = ""
    init = ref.get("init")
    if init:
        src = Path(args.parity_dir) / init / "model_final.pth"
        if cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone":
            dst = out_dir / "init.pth"
            _plain_resnet_init(
                src, dst, res5_in_roi_heads=cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads"
            )
            cfg.MODEL.WEIGHTS = str(dst)
        else:
            cfg.MODEL.WEIGHTS = str(src)
    cfg.freeze()
    return cfg


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate one model; returns its table row (see :func:`format_table`)."""
    from torchdet.utils.env import seed_all_rng

    ref = json.loads((Path(args.parity_dir) / name / "results.json").read_text())
    ref_dataset, ref_eval = reference_results(ref)
    cfg = build_cfg(name, args, ref)
    seed_all_rng(cfg.SEED)
    trainer_cls = _trainer_class()
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=False)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = trainer_cls.test(cfg, trainer.model)
    eval_s = time.perf_counter() - t0
    return {
        "model": name,
        "iters": cfg.SOLVER.MAX_ITER,
        "ref_iters": ref["train_iters"],
        "train_seconds": train_s,
        "ref_train_seconds": ref["train_seconds"],
        "eval_seconds": eval_s,
        "ref_eval_seconds": ref.get(f"eval_seconds_{ref_dataset}"),
        "init": ref.get("init"),
        "ours": main_metrics(results),
        "ref": main_metrics(ref_eval),
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    from torchdet.tools.common import register_datasets

    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_datasets(args)
    rows = []
    for name in args.models:
        rows.append(run_model(name, args))
        print(format_table(rows[-1:]), flush=True)
    print()
    print(
        f"threads={torch.get_num_threads()} amp={args.amp} iters_scale={args.iters_scale}",
    )
    print(format_table(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        meta = {"threads": torch.get_num_threads(), "amp": args.amp, "scale": args.iters_scale}
        Path(args.out).write_text(json.dumps({"args": meta, "models": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()

"""Model complexity of a config: FLOPs, activations, parameters or structure (Detectron2's
``tools/analyze_model.py``).

    torchdet analyze --config-file cfg.yaml --tasks flop parameter [--num-inputs 2]

``flop`` and ``activation`` run the model (eval mode) on ``--num-inputs`` images of the first
test dataset, or on random images of ``INPUT.MIN_SIZE_TEST`` when ``--random-input`` is given.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from collections import Counter
from typing import Any

import numpy as np
import torch

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import CfgNode
from torchdet.engine import default_argument_parser
from torchdet.modeling import build_model
from torchdet.utils.analysis import (
    FlopCountAnalysis,
    activation_count_operators,
    parameter_count_table,
)
from torchdet.utils.logger import setup_logger

from .common import add_dataset_arguments, load_config, register_datasets

__all__ = ["get_parser", "invoke_main", "main"]

logger = logging.getLogger("torchdet.tools.analyze_model")


def get_parser() -> argparse.ArgumentParser:
    parser = add_dataset_arguments(default_argument_parser())
    parser.add_argument(
        "--tasks",
        choices=["flop", "activation", "parameter", "structure"],
        required=True,
        nargs="+",
    )
    parser.add_argument("-n", "--num-inputs", default=100, type=int, help="images to average")
    parser.add_argument(
        "--random-input", action="store_true", help="random images instead of the test dataset"
    )
    return parser


def _inputs(cfg: CfgNode, args: argparse.Namespace) -> list[list[dict]]:
    if args.random_input or not len(cfg.DATASETS.TEST):
        s = cfg.INPUT.MIN_SIZE_TEST
        g = torch.Generator().manual_seed(0)
        image = (torch.rand(3, s, int(s * 4 / 3), generator=g) * 255).round()
        return [[{"image": image}] for _ in range(args.num_inputs)]
    from torchdet.data import build_detection_test_loader

    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    return list(itertools.islice(loader, args.num_inputs))


def _average(per_input: list[dict[str, float]]) -> dict[str, float]:
    total: Counter = Counter()
    for d in per_input:
        total.update(d)
    return {k: v / len(per_input) for k, v in total.items()}


def main(args: argparse.Namespace) -> dict[str, Any]:
    register_datasets(args)
    cfg = load_config(args, freeze=False)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    setup_logger()
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    results: dict[str, Any] = {}
    if "flop" in args.tasks or "activation" in args.tasks:
        inputs = _inputs(cfg, args)
    if "flop" in args.tasks:
        per_input = [FlopCountAnalysis(model, batch).by_operator() for batch in inputs]
        flops = _average(per_input)
        total = sum(flops.values())
        logger.info(
            "Flops table computed from only one input sample:\n%s",
            "\n".join(f"  {k}: {v / 1e9:.3f} G" for k, v in sorted(flops.items())),
        )
        logger.info(
            "Average GFlops for each type of operators:\n%s",
            {k: round(v / 1e9, 3) for k, v in flops.items()},
        )
        std = float(np.std([sum(d.values()) for d in per_input])) / 1e9
        logger.info("Total GFlops: %.1f±%.1f", total / 1e9, std)
        results["gflops"] = {k: v / 1e9 for k, v in flops.items()}
        results["total_gflops"] = total / 1e9
    if "activation" in args.tasks:
        acts = _average([activation_count_operators(model, batch) for batch in inputs])
        logger.info("(Million) Activations for each type of operators:\n%s", acts)
        results["mega_activations"] = acts
        results["total_mega_activations"] = sum(acts.values())
    if "parameter" in args.tasks:
        table = parameter_count_table(model, max_depth=5)
        logger.info("Parameter count:\n%s", table)
        results["parameters"] = sum(p.numel() for p in model.parameters())
    if "structure" in args.tasks:
        logger.info("Model Structure:\n%s", model)
        results["structure"] = str(model)
    return results


def invoke_main(argv: list[str] | None = None) -> int:
    main(get_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(invoke_main())

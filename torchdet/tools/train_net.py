"""Train or evaluate a model from a config (Detectron2's ``tools/train_net.py``).

torchdet train --config-file cfg.yaml [--num-gpus N] [--resume] [KEY VALUE ...]
torchdet eval --config-file cfg.yaml MODEL.WEIGHTS model_final.pth
"""

from __future__ import annotations

import argparse
import logging
from collections import OrderedDict
from typing import Any

from torchdet.checkpoint import DetectionCheckpointer
from torchdet.config import CfgNode
from torchdet.engine import DefaultTrainer, default_argument_parser, default_setup, hooks, launch
from torchdet.utils import comm

from .common import add_dataset_arguments, load_config, register_datasets

__all__ = ["Trainer", "get_parser", "invoke_main", "main", "setup"]


# The evaluator follows each test dataset's ``evaluator_type`` (DefaultTrainer.build_evaluator).
Trainer = DefaultTrainer


def get_parser() -> argparse.ArgumentParser:
    return add_dataset_arguments(default_argument_parser())


def setup(args: argparse.Namespace) -> CfgNode:
    """Load the config of the command line and run ``default_setup``."""
    register_datasets(args)
    cfg = load_config(args)
    default_setup(cfg, args)
    return cfg


def main(args: argparse.Namespace) -> Any:
    """Train (or with ``--eval-only`` evaluate) as the command line says.

    Returns:
        The evaluation results (a dict), or None when nothing was evaluated.
    """
    # Each launched process registers the datasets again (spawned processes start empty).
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res = OrderedDict(res)
            res.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process() and len(cfg.TEST.EXPECTED_RESULTS):
            from torchdet.evaluation import verify_results

            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        trainer.register_hooks(
            [hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))]
        )
    return trainer.train()


def invoke_main(argv: list[str] | None = None, *, eval_only: bool = False) -> int:
    """Parse ``argv`` and run :func:`main` in ``--num-gpus`` processes."""
    args = get_parser().parse_args(argv)
    if eval_only:
        args.eval_only = True
    logging.getLogger(__name__).info("Command Line Args: %s", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return 0


def _invoke_eval(argv: list[str] | None = None) -> int:
    """``torchdet eval``: :func:`invoke_main` with ``--eval-only``."""
    return invoke_main(argv, eval_only=True)


if __name__ == "__main__":
    raise SystemExit(invoke_main())

"""Train a narrow ProposalNetwork (the parity Mask R-CNN's ResNet-50/FPN widths, FrozenBN) on
the shapes data with ``DefaultTrainer`` in ``--num-procs`` processes (run by test_launch.py).

Every image is resized to 256x256 (so batching pads nothing) without flips, and the RPN keeps
every anchor (no random subsampling): one process with the full batch and two with half each
must then see the same losses. Losses go to ``<output>/losses.json``.

    _rpn_train.py --output DIR --shapes DIR --parity-config FILE [--num-procs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from torchdet.config import get_cfg
from torchdet.data import DatasetMapper, build_detection_train_loader
from torchdet.data import transforms as T
from torchdet.engine import DefaultTrainer, default_setup, hooks, launch
from torchdet.utils import comm


class Trainer(DefaultTrainer):
    @classmethod
    def build_train_loader(cls, cfg):
        mapper = DatasetMapper(cfg, is_train=True, augmentations=[T.Resize((256, 256))])
        return build_detection_train_loader(cfg, mapper=mapper)

    def build_hooks(self):
        def dump(trainer):
            if comm.is_main_process():
                losses = {
                    k: [v for v, _ in h.values()]
                    for k, h in trainer.storage.histories().items()
                    if "loss" in k
                }
                with open(os.path.join(self.cfg.OUTPUT_DIR, "losses.json"), "w") as f:
                    json.dump(losses, f)

        return [*super().build_hooks(), hooks.CallbackHook(after_train=dump)]


def main(o: argparse.Namespace) -> None:
    from torchdet.data.datasets.synthetic import register_shapes

    register_shapes(o.shapes)
    cfg = get_cfg()
    cfg.merge_from_file(o.parity_config)
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 10**7  # all anchors: no random subsampling
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
    cfg.DATASETS.TEST = ()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = o.max_iter
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.OUTPUT_DIR = o.output
    cfg.SEED = 3
    cfg.freeze()
    default_setup(cfg, o)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()


if __name__ == "__main__":
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("--output", required=True)
    p.add_argument("--shapes", required=True)
    p.add_argument("--parity-config", required=True)
    p.add_argument("--num-procs", type=int, default=1)
    p.add_argument("--max-iter", type=int, default=3)
    opts = p.parse_args(sys.argv[1:])
    opts.config_file, opts.eval_only = "", False
    launch(main, opts.num_procs, args=(opts,))

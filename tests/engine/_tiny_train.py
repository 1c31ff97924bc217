"""Train a tiny model with ``DefaultTrainer`` (run as a script by the engine tests).

The model, data and augmentations use all of python's, numpy's and torch's generators, so an
exact resume needs every one of them restored. Options:

    --output DIR --max-iter N --period P [--resume] [--kill-at K] [--num-procs W]
    [--deterministic] [--batch B] [--amp] [--nan-at K] [--workers N] [--grouping]
    [--kill-in-save N]

``--kill-at K`` SIGKILLs the process at the start of iteration K; ``--kill-in-save N`` SIGKILLs
it half-way through writing its N-th checkpoint. The final weights are saved
to ``DIR/final_weights.pt`` and the per-iteration losses to ``DIR/losses.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys

import numpy as np
import torch
from torch import nn

from torchdet.config import get_cfg
from torchdet.data import build_detection_train_loader
from torchdet.engine import DefaultTrainer, default_setup, hooks, launch
from torchdet.utils import comm

NUM_ITEMS = 24


class TinyNet(nn.Module):
    """conv -> relu -> pool -> (dropout) -> linear; losses: MSE to the target and an L1 term."""

    def __init__(self, dropout: float, nan_at: int | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 1)
        self.dropout = nn.Dropout(dropout)
        self.nan_at = nan_at
        self.calls = 0

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        x = torch.stack([d["image"] for d in batched_inputs])
        y = torch.tensor([d["target"] for d in batched_inputs], dtype=torch.float32)
        feat = torch.relu(self.conv(x)).mean(dim=(2, 3))
        out = self.fc(self.dropout(feat)).squeeze(1)
        losses = {"loss_mse": ((out - y) ** 2).mean(), "loss_l1": 0.1 * out.abs().mean()}
        if self.nan_at is not None and self.calls == self.nan_at:
            losses["loss_l1"] = losses["loss_l1"] * float("nan")
        self.calls += 1
        return losses


def make_dataset() -> list[dict]:
    rng = np.random.RandomState(123)  # the data themselves never depend on the global seed
    return [
        {
            "image": rng.rand(3, 8, 8).astype(np.float32),
            "target": float(rng.randn()),
            "image_id": i,
            "width": 8 if i % 3 else 6,  # some portrait items, for aspect-ratio grouping
            "height": 6 if i % 3 else 8,
        }
        for i in range(NUM_ITEMS)
    ]


class RandomMapper:
    """Augment with python (flip), numpy (noise) generators, as a real mapper would."""

    def __init__(self, deterministic: bool) -> None:
        self.deterministic = deterministic

    def __call__(self, d: dict) -> dict:
        img = torch.from_numpy(d["image"].copy())
        if not self.deterministic:
            if random.random() < 0.5:
                img = img.flip(-1)
            img = img + torch.from_numpy(np.random.randn(*img.shape).astype(np.float32)) * 0.1
        return {**d, "image": img}


class Trainer(DefaultTrainer):
    opts: argparse.Namespace

    @classmethod
    def build_model(cls, cfg):
        o = cls.opts
        return TinyNet(0.0 if o.deterministic else 0.3, o.nan_at)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(
            make_dataset(),
            mapper=RandomMapper(cls.opts.deterministic),
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    def build_hooks(self):
        ret = super().build_hooks()
        kill_at = self.opts.kill_at

        def before_step(trainer):
            if kill_at is not None and trainer.iter == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def after_train(trainer):
            if comm.is_main_process():
                hist = trainer.storage.histories()
                losses = {
                    k: [[v, i] for v, i in h.values()]
                    for k, h in hist.items()
                    if k.startswith("loss") or k == "total_loss"
                }
                with open(os.path.join(self.cfg.OUTPUT_DIR, "losses.json"), "w") as f:
                    json.dump(losses, f)

        ret.insert(0, hooks.CallbackHook(before_step=before_step, after_train=after_train))
        return ret


def setup(o: argparse.Namespace):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = o.output
    cfg.SEED = 7
    cfg.SOLVER.IMS_PER_BATCH = o.batch
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.MAX_ITER = o.max_iter
    cfg.SOLVER.STEPS = (o.max_iter // 2,)
    cfg.SOLVER.WARMUP_ITERS = 3
    cfg.SOLVER.CHECKPOINT_PERIOD = o.period
    cfg.SOLVER.AMP.ENABLED = o.amp
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = o.grouping
    cfg.DATALOADER.NUM_WORKERS = o.workers
    cfg.freeze()
    return cfg


def kill_during_save(n: int) -> None:
    """Make the n-th checkpoint write half of its bytes, then SIGKILL the process."""
    real_save = torch.save
    count = [0]

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "trainer" in obj:
            count[0] += 1
            if count[0] == n:
                import io

                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save


def main(o: argparse.Namespace) -> None:
    if o.kill_in_save is not None:
        kill_during_save(o.kill_in_save)
    cfg = setup(o)
    default_setup(cfg, o)
    Trainer.opts = o
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=o.resume)
    trainer.train()
    if comm.is_main_process():
        torch.save(trainer.model.state_dict(), os.path.join(o.output, "final_weights.pt"))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--output", required=True)
    p.add_argument("--max-iter", type=int, default=12)
    p.add_argument("--period", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--nan-at", type=int, default=None)
    p.add_argument("--kill-in-save", type=int, default=None)
    p.add_argument("--num-procs", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--grouping", action="store_true")
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--amp", action="store_true")
    o = p.parse_args(argv)
    o.config_file, o.eval_only = "", False
    return o


if __name__ == "__main__":
    torch.set_num_threads(1)
    opts = parse(sys.argv[1:])
    launch(main, opts.num_procs, args=(opts,))

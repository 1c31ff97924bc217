"""Training loop, hooks, defaults for training/inference, and multi-process launching."""

from .defaults import (
    BatchPredictor,
    DefaultPredictor,
    DefaultTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
)
from .hooks import *  # noqa: F403
from .launch import launch
from .train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase

__all__ = [k for k in globals() if not k.startswith("_")]

"""Training loop, hooks, defaults for training/inference, and multi-process launching.

Names are resolved on first access (PEP 562): ``from torchdet.engine import launch`` does not
import the models and data loaders that ``DefaultTrainer`` needs, so processes started by
``launch`` and small scripts start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# Eager: light, and ``launch`` must be the function even after ``import torchdet.engine.launch``
# (which would otherwise leave the submodule under that name).
from .launch import launch
from .train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase

_HOOKS = (
    "AutogradProfiler",
    "BestCheckpointer",
    "CallbackHook",
    "EarlyStopping",
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
    "TorchMemoryStats",
    "TorchProfiler",
    "ValidationLoss",
    "get_bn_modules",
    "update_bn_stats",
)

# public name -> submodule defining it (None: the name is the submodule itself)
_EXPORTS: dict[str, str | None] = {
    "hooks": None,
    "defaults": None,
    "BatchPredictor": "defaults",
    "DefaultPredictor": "defaults",
    "DefaultTrainer": "defaults",
    "create_ddp_model": "defaults",
    "default_argument_parser": "defaults",
    "default_setup": "defaults",
    "default_writers": "defaults",
    **{name: "hooks" for name in _HOOKS},
}

__all__ = [
    "AMPTrainer",
    "HookBase",
    "SimpleTrainer",
    "TrainerBase",
    "launch",
    *(k for k in _EXPORTS if k != "defaults"),
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'torchdet.engine' has no attribute {name!r}")
    module_name = _EXPORTS[name]
    if module_name is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

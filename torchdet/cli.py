"""The ``torchdet`` command: ``torchdet <subcommand> [args]``.

Subcommands map to modules with an ``invoke_main(argv) -> int`` function; other packages add
theirs with :func:`register_subcommand`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["main", "register_subcommand"]

# name -> (module, function name, one-line help)
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("torchdet.tools.train_net", "invoke_main", "train a model from a config"),
    "eval": ("torchdet.tools.train_net", "_invoke_eval", "evaluate a model (train --eval-only)"),
    "benchmark": (
        "torchdet.tools.benchmark",
        "invoke_main",
        "time training, inference or data loading",
    ),
    "analyze": (
        "torchdet.tools.analyze_model",
        "invoke_main",
        "FLOPs, activations, parameters or structure of a model",
    ),
    "export": (
        "torchdet.tools.export_model",
        "invoke_main",
        "export a model to ONNX, TorchScript or torch.export",
    ),
    "quickstart": (
        "torchdet.tools.quickstart",
        "invoke_main",
        "train, evaluate and visualize a small Mask R-CNN on synthetic data (CPU, minutes)",
    ),
    "demo": ("torchdet.tools.demo", "invoke_main", "draw a model's predictions on images/videos"),
    "visualize-data": (
        "torchdet.tools.visualize_data",
        "invoke_main",
        "draw a dataset's annotations or the train loader's batches",
    ),
    "visualize-results": (
        "torchdet.tools.visualize_json_results",
        "invoke_main",
        "draw a COCO results json over its dataset",
    ),
}


def register_subcommand(name: str, module: str, help: str, function: str = "invoke_main") -> None:  # noqa: A002
    """Add ``torchdet <name>``, which calls ``module.function(argv)`` (imported when used)."""
    if name in _SUBCOMMANDS and _SUBCOMMANDS[name][0] != module:
        raise KeyError(
            f"torchdet subcommand {name!r} is already registered by {_SUBCOMMANDS[name][0]}"
        )
    _SUBCOMMANDS[name] = (module, function, help)


def _usage() -> str:
    width = max(len(k) for k in _SUBCOMMANDS)
    lines = ["usage: torchdet <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {k.ljust(width)}  {v[2]}" for k, v in sorted(_SUBCOMMANDS.items())]
    lines += ["", "Run 'torchdet <subcommand> --help' for its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchdet`` console script.

    Returns:
        The process exit status.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in _SUBCOMMANDS:
        print(f"torchdet: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function, _ = _SUBCOMMANDS[name]
    fn: Callable[[list[str]], int | None] = getattr(importlib.import_module(module_name), function)
    return int(fn(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

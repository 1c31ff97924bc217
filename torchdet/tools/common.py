"""Set-up shared by the command-line tools: config loading and dataset registration."""

from __future__ import annotations

import argparse
import os

from torchdet.config import CfgNode, get_cfg

__all__ = ["add_dataset_arguments", "load_config", "register_datasets"]


def add_dataset_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--shapes-root`` (register the synthetic shapes dataset's splits first)."""
    parser.add_argument(
        "--shapes-root",
        default=os.environ.get("TORCHDET_SHAPES_DIR", ""),
        metavar="DIR",
        help="register the shapes dataset (shapes_train, shapes_val, ...) from DIR "
        "(default $TORCHDET_SHAPES_DIR)",
    )
    return parser


def register_datasets(args: argparse.Namespace) -> None:
    """Register the datasets named by the command line (``--shapes-root``)."""
    root = getattr(args, "shapes_root", "")
    if root:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"--shapes-root: {root} is not a folder")
        from torchdet.data.datasets.synthetic import register_shapes

        register_shapes(root)


def load_config(args: argparse.Namespace, *, freeze: bool = True) -> CfgNode:
    """``get_cfg()`` merged with ``args.config_file`` (a file, or a model-zoo name such as
    ``"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"``) and ``args.opts``.
    """
    cfg = get_cfg()
    config_file = getattr(args, "config_file", "")
    if config_file:
        if not os.path.isfile(config_file):
            from torchdet.model_zoo import get_config_file

            try:
                config_file = get_config_file(config_file)
            except (RuntimeError, ValueError, KeyError, FileNotFoundError) as e:
                raise FileNotFoundError(
                    f"--config-file {config_file!r} is neither a file nor a model-zoo config"
                ) from e
        cfg.merge_from_file(config_file)
    opts = getattr(args, "opts", None) or []
    if len(opts) % 2:
        raise ValueError(f"config overrides must be KEY VALUE pairs, got {opts}")
    cfg.merge_from_list(list(opts))
    if freeze:
        cfg.freeze()
    return cfg

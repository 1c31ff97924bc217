"""Configs: the yacs-style ``CfgNode`` of Detectron2, ``configurable`` and LazyConfig."""

from .cfg_node import CfgNode, ConfigKeyError, ConfigTypeError, load_cfg
from .compat import downgrade_config, upgrade_config
from .config import configurable
from .defaults import get_cfg, global_cfg, set_global_cfg
from .instantiate import dump_dataclass, instantiate
from .lazy import L, LazyCall, LazyConfig

__all__ = [
    "CfgNode",
    "ConfigKeyError",
    "ConfigTypeError",
    "L",
    "LazyCall",
    "LazyConfig",
    "configurable",
    "downgrade_config",
    "dump_dataclass",
    "get_cfg",
    "global_cfg",
    "instantiate",
    "load_cfg",
    "set_global_cfg",
    "upgrade_config",
]

"""Configs: the yacs-style ``CfgNode`` of Detectron2, ``configurable`` and LazyConfig."""

from .cfg_node import CfgNode, ConfigKeyError, ConfigTypeError, load_cfg
from .compat import downgrade_config, upgrade_config
from .config import configurable
from .defaults import get_cfg, global_cfg, set_global_cfg

__all__ = [
    "CfgNode",
    "ConfigKeyError",
    "ConfigTypeError",
    "configurable",
    "downgrade_config",
    "get_cfg",
    "global_cfg",
    "load_cfg",
    "set_global_cfg",
    "upgrade_config",
]

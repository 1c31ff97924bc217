"""Configs: the yacs-style ``CfgNode`` of Detectron2, ``configurable`` and LazyConfig."""

from .config import configurable

"""Detectron2's model zoo: packaged configs, the URLs of their trained weights, ready models."""

from .model_zoo import (
    ModelZooError,
    get,
    get_checkpoint_url,
    get_config,
    get_config_file,
    list_configs,
)

__all__ = [
    "ModelZooError",
    "get",
    "get_checkpoint_url",
    "get_config",
    "get_config_file",
    "list_configs",
]

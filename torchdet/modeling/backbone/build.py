"""The backbone registry and ``build_backbone``."""

from __future__ import annotations

from torchdet.layers import ShapeSpec
from torchdet.utils.registry import Registry

from .backbone import Backbone

__all__ = ["BACKBONE_REGISTRY", "build_backbone"]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Registry for backbones, which extract feature maps from images.

A registered object is called as ``obj(cfg, input_shape)`` and must return a ``Backbone``.
"""


def build_backbone(cfg, input_shape: ShapeSpec | None = None) -> Backbone:
    """Build the backbone named by ``cfg.MODEL.BACKBONE.NAME``.

    Args:
        cfg: a config node.
        input_shape: the input's shape; default ``ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))``.

    Returns:
        Backbone: the built backbone.
    """
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    name = cfg.MODEL.BACKBONE.NAME
    backbone = BACKBONE_REGISTRY.get(name)(cfg, input_shape)
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"cfg.MODEL.BACKBONE.NAME={name!r} built a {type(backbone).__name__}, "
            "which is not a torchdet.modeling.Backbone"
        )
    return backbone

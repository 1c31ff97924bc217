"""The proposal-generator registry and ``build_proposal_generator``."""

from __future__ import annotations

from torch import nn

from torchdet.layers import ShapeSpec
from torchdet.utils.registry import Registry

__all__ = ["PROPOSAL_GENERATOR_REGISTRY", "build_proposal_generator"]

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = """
Registry for proposal generators, which produce object proposals from feature maps.

A registered object is called as ``obj(cfg, input_shape: dict[str, ShapeSpec])``.
"""


def build_proposal_generator(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module | None:
    """Build ``cfg.MODEL.PROPOSAL_GENERATOR.NAME``; "PrecomputedProposals" gives ``None``
    (the proposals then come with the inputs).
    """
    name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
    if name == "PrecomputedProposals":
        return None
    return PROPOSAL_GENERATOR_REGISTRY.get(name)(cfg, input_shape)

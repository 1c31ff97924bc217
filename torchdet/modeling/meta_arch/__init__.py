"""Meta-architectures: whole models, selected by ``cfg.MODEL.META_ARCHITECTURE``."""

from .build import META_ARCH_REGISTRY, build_model
from .rcnn import GeneralizedRCNN, ProposalNetwork

__all__ = [k for k in globals() if not k.startswith("_")]

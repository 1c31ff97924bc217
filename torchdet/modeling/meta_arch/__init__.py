"""Meta-architectures: whole models, selected by ``cfg.MODEL.META_ARCHITECTURE``."""

from .build import META_ARCH_REGISTRY, build_model

# Importing registers them.
from .dense_detector import DenseDetector
from .fcos import FCOS, FCOSHead
from .panoptic_fpn import PanopticFPN, combine_semantic_and_instance_outputs
from .rcnn import GeneralizedRCNN, ProposalNetwork
from .retinanet import RetinaNet, RetinaNetHead
from .semantic_seg import (
    SEM_SEG_HEADS_REGISTRY,
    SemanticSegmentor,
    SemSegFPNHead,
    build_sem_seg_head,
)

__all__ = [k for k in globals() if not k.startswith("_")]

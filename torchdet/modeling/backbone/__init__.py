"""Backbones: the ``Backbone`` interface, ResNet and FPN, and the ``BACKBONE_REGISTRY``."""

from .backbone import Backbone
from .build import BACKBONE_REGISTRY, build_backbone
from .fpn import (
    FPN,
    LastLevelMaxPool,
    LastLevelP6P7,
    build_resnet_fpn_backbone,
    build_retinanet_resnet_fpn_backbone,
)
from .mvit import MViT
from .regnet import RegNet
from .resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeformBottleneckBlock,
    ResNet,
    ResNetBlockBase,
    build_resnet_backbone,
    make_stage,
)
from .swin import SwinTransformer
from .vit import SimpleFeaturePyramid, ViT, get_vit_lr_decay_rate

__all__ = [k for k in globals() if not k.startswith("_")]

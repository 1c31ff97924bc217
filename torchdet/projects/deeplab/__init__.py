"""DeepLab v3 / v3+ semantic segmentation ("Encoder-Decoder with Atrous Separable Convolution
for Semantic Image Segmentation", Chen et al. 2018).

Importing this package registers ``build_resnet_deeplab_backbone`` (``BACKBONE_REGISTRY``) and
``DeepLabV3PlusHead`` / ``DeepLabV3Head`` (``SEM_SEG_HEADS_REGISTRY``); the meta-architecture is
the core ``SemanticSegmentor``. Call :func:`add_deeplab_config` on a ``get_cfg()`` before
merging a DeepLab config.
"""

from .build_solver import WarmupPolyLR, build_lr_scheduler
from .config import add_deeplab_config
from .loss import DeepLabCE
from .resnet import DeepLabStem, build_resnet_deeplab_backbone
from .semantic_seg import DeepLabV3Head, DeepLabV3PlusHead

__all__ = [k for k in globals() if not k.startswith("_")]

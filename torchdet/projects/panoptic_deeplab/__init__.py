"""Panoptic-DeepLab ("Panoptic-DeepLab: A Simple, Strong, and Fast Baseline for Bottom-Up
Panoptic Segmentation", Cheng et al. 2020).

Importing this package registers ``PanopticDeepLab`` (``META_ARCH_REGISTRY``),
``PanopticDeepLabSemSegHead`` (``SEM_SEG_HEADS_REGISTRY``) and ``PanopticDeepLabInsEmbedHead``
(``INS_EMBED_BRANCHES_REGISTRY``), plus DeepLab's backbone. Call
:func:`add_panoptic_deeplab_config` on a ``get_cfg()`` before merging a config.
"""

from .config import add_panoptic_deeplab_config
from .dataset_mapper import PanopticDeeplabDatasetMapper
from .heads import (
    INS_EMBED_BRANCHES_REGISTRY,
    PanopticDeepLabInsEmbedHead,
    PanopticDeepLabSemSegHead,
    build_ins_embed_branch,
)
from .panoptic_seg import PanopticDeepLab
from .post_processing import (
    find_instance_center,
    get_instance_segmentation,
    get_panoptic_segmentation,
    group_pixels,
    merge_semantic_and_instance,
)
from .target_generator import PanopticDeepLabTargetGenerator

__all__ = [k for k in globals() if not k.startswith("_")]

"""DeepLab's config keys (Detectron2's ``add_deeplab_config``)."""

from __future__ import annotations

from torchdet.config import CfgNode as CN

__all__ = ["add_deeplab_config"]


def add_deeplab_config(cfg: CN) -> None:
    """Add DeepLab's keys, with Detectron2's defaults, to ``cfg`` in place.

    Adds ``INPUT.CROP.SINGLE_CATEGORY_MAX_AREA``, ``SOLVER.POLY_LR_POWER``,
    ``SOLVER.POLY_LR_CONSTANT_ENDING``, the DeepLab keys of ``MODEL.SEM_SEG_HEAD``
    (``LOSS_TYPE``, ``PROJECT_FEATURES``, ``PROJECT_CHANNELS``, ``ASPP_*``,
    ``USE_DEPTHWISE_SEPARABLE_CONV``) and ``MODEL.RESNETS.{RES4_DILATION, RES5_MULTI_GRID,
    STEM_TYPE}``.
    """
    # Random crops are retried until no single category covers more than this fraction.
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    # The "poly" learning-rate schedule: (1 - iter / max_iter) ** power.
    cfg.SOLVER.POLY_LR_POWER = 0.9
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
    # "cross_entropy" or "hard_pixel_mining" (mean over the 20% hardest pixels).
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES = ["res2"]
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [48]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
    cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
    cfg.MODEL.RESNETS.RES4_DILATION = 1
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 2, 4]
    # "basic" (one 7x7 conv) or "deeplab" (three 3x3 convs).
    cfg.MODEL.RESNETS.STEM_TYPE = "deeplab"

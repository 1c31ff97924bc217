"""Panoptic-DeepLab's config keys (Detectron2's ``add_panoptic_deeplab_config``)."""

from __future__ import annotations

from torchdet.config import CfgNode as CN
from torchdet.projects.deeplab import add_deeplab_config

__all__ = ["add_panoptic_deeplab_config"]


def add_panoptic_deeplab_config(cfg: CN) -> None:
    """Add Panoptic-DeepLab's keys (and DeepLab's, see ``add_deeplab_config``), with
    Detectron2's defaults, to ``cfg`` in place: the target-generation keys of ``INPUT``,
    ``SOLVER.OPTIMIZER``, ``MODEL.SEM_SEG_HEAD.{HEAD_CHANNELS, LOSS_TOP_K}``,
    ``MODEL.INS_EMBED_HEAD`` and ``MODEL.PANOPTIC_DEEPLAB``."""
    add_deeplab_config(cfg)
    # Targets: centre heatmap Gaussian sigma, offsets only on things, small-instance weights.
    cfg.INPUT.GAUSSIAN_SIGMA = 10
    cfg.INPUT.IGNORE_STUFF_IN_OFFSET = True
    cfg.INPUT.SMALL_INSTANCE_AREA = 4096
    cfg.INPUT.SMALL_INSTANCE_WEIGHT = 3
    cfg.INPUT.IGNORE_CROWD_IN_SEMANTIC = False
    cfg.SOLVER.OPTIMIZER = "ADAM"
    # One extra convolution before the semantic predictor.
    cfg.MODEL.SEM_SEG_HEAD.HEAD_CHANNELS = 256
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TOP_K = 0.2

    cfg.MODEL.INS_EMBED_HEAD = CN()
    cfg.MODEL.INS_EMBED_HEAD.NAME = "PanopticDeepLabInsEmbedHead"
    cfg.MODEL.INS_EMBED_HEAD.IN_FEATURES = ["res2", "res3", "res5"]
    cfg.MODEL.INS_EMBED_HEAD.PROJECT_FEATURES = ["res2", "res3"]
    cfg.MODEL.INS_EMBED_HEAD.PROJECT_CHANNELS = [32, 64]
    cfg.MODEL.INS_EMBED_HEAD.ASPP_CHANNELS = 256
    cfg.MODEL.INS_EMBED_HEAD.ASPP_DILATIONS = [6, 12, 18]
    cfg.MODEL.INS_EMBED_HEAD.ASPP_DROPOUT = 0.1
    cfg.MODEL.INS_EMBED_HEAD.HEAD_CHANNELS = 32
    cfg.MODEL.INS_EMBED_HEAD.CONVS_DIM = 128
    cfg.MODEL.INS_EMBED_HEAD.COMMON_STRIDE = 4
    cfg.MODEL.INS_EMBED_HEAD.NORM = "SyncBN"
    cfg.MODEL.INS_EMBED_HEAD.CENTER_LOSS_WEIGHT = 200.0
    cfg.MODEL.INS_EMBED_HEAD.OFFSET_LOSS_WEIGHT = 0.01

    cfg.MODEL.PANOPTIC_DEEPLAB = CN()
    # Stuff segments smaller than this many pixels become void.
    cfg.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA = 2048
    cfg.MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD = 0.1
    cfg.MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL = 7
    cfg.MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE = 200
    # Also return "instances" (one per thing segment) for instance evaluation.
    cfg.MODEL.PANOPTIC_DEEPLAB.PREDICT_INSTANCES = True
    cfg.MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV = False
    # Pad every image to a multiple of this (-1: the backbone's), so that ASPP's fixed
    # pooling kernel divides the feature size.
    cfg.MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY = -1
    # Return nothing after the network (speed benchmarks without post-processing).
    cfg.MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED = False

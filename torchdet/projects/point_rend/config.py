"""PointRend's config keys (Detectron2's ``add_pointrend_config``)."""

from __future__ import annotations

from torchdet.config import CfgNode as CN

__all__ = ["add_pointrend_config"]


def add_pointrend_config(cfg: CN) -> None:
    """Add PointRend's keys, with Detectron2's defaults, to ``cfg`` in place.

    Adds ``INPUT.CROP.SINGLE_CATEGORY_MAX_AREA``, ``INPUT.COLOR_AUG_SSD``, the coarse-head keys
    of ``MODEL.ROI_MASK_HEAD`` (``IN_FEATURES``, ``FC_DIM``, ``NUM_FC``,
    ``OUTPUT_SIDE_RESOLUTION``, ``POINT_HEAD_ON``), ``MODEL.POINT_HEAD`` and
    ``MODEL.IMPLICIT_POINTREND``.
    """
    # Random crops are retried until no single category covers more than this fraction.
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    # SSD-style colour augmentation for semantic segmentation training.
    cfg.INPUT.COLOR_AUG_SSD = False

    # Coarse mask head: features it reads, its FC layers and its output side.
    cfg.MODEL.ROI_MASK_HEAD.IN_FEATURES = ("p2",)
    cfg.MODEL.ROI_MASK_HEAD.FC_DIM = 1024
    cfg.MODEL.ROI_MASK_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_MASK_HEAD.OUTPUT_SIDE_RESOLUTION = 7
    cfg.MODEL.ROI_MASK_HEAD.POINT_HEAD_ON = False

    cfg.MODEL.POINT_HEAD = CN()
    cfg.MODEL.POINT_HEAD.NAME = "StandardPointHead"
    cfg.MODEL.POINT_HEAD.NUM_CLASSES = 80
    cfg.MODEL.POINT_HEAD.IN_FEATURES = ("p2",)
    # Points per region in training, and the paper's k (oversampling) and beta (importance).
    cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS = 14 * 14
    cfg.MODEL.POINT_HEAD.OVERSAMPLE_RATIO = 3
    cfg.MODEL.POINT_HEAD.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Adaptive subdivision at inference: steps and points refined per step.
    cfg.MODEL.POINT_HEAD.SUBDIVISION_STEPS = 5
    cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS = 28 * 28
    cfg.MODEL.POINT_HEAD.FC_DIM = 256
    cfg.MODEL.POINT_HEAD.NUM_FC = 3
    cfg.MODEL.POINT_HEAD.CLS_AGNOSTIC_MASK = False
    # Concatenate the coarse prediction to the input of every MLP layer.
    cfg.MODEL.POINT_HEAD.COARSE_PRED_EACH_LAYER = True
    cfg.MODEL.POINT_HEAD.COARSE_SEM_SEG_HEAD_NAME = "SemSegFPNHead"

    # Implicit PointRend (parameters of the point head predicted per instance).
    cfg.MODEL.IMPLICIT_POINTREND = CN()
    cfg.MODEL.IMPLICIT_POINTREND.IMAGE_FEATURE_ENABLED = True
    cfg.MODEL.IMPLICIT_POINTREND.POS_ENC_ENABLED = True
    cfg.MODEL.IMPLICIT_POINTREND.PARAMS_L2_REGULARIZER = 0.00001

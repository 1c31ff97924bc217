"""TensorMask's config keys (``MODEL.TENSOR_MASK``), after Detectron2's
``add_tensormask_config``. No reference fixture exists for TensorMask, so these keys and
defaults are not checked against a reference dump."""

from __future__ import annotations

from torchdet.config import CfgNode as CN

__all__ = ["add_tensormask_config"]


def add_tensormask_config(cfg: CN) -> None:
    """Add ``MODEL.TENSOR_MASK`` to ``cfg`` in place."""
    tm = cfg.MODEL.TENSOR_MASK = CN()
    tm.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6", "p7"]
    tm.NUM_CONVS = 4
    tm.NUM_CLASSES = 80
    tm.CLS_CHANNELS = 256
    tm.SCORE_THRESH_TEST = 0.05
    tm.TOPK_CANDIDATES_TEST = 6000
    tm.NMS_THRESH_TEST = 0.5
    tm.BBOX_CHANNELS = 128
    tm.BBOX_REG_WEIGHTS = (1.5, 1.5, 0.75, 0.75)
    tm.FOCAL_LOSS_GAMMA = 3.0
    tm.FOCAL_LOSS_ALPHA = 0.3
    tm.MASK_CHANNELS = 128
    tm.MASK_LOSS_WEIGHT = 2.0
    tm.POSITIVE_WEIGHT = 1.5
    # Predict masks in the aligned representation (converted with swap_align2nat).
    tm.ALIGNED_ON = False
    # Tensor bipyramid: every level's masks at the finest level's pixel resolution.
    tm.BIPYRAMID_ON = False
    # Window (mask) side of the base level, in units of that level's stride.
    tm.MASK_SIZE = 15

"""add_densepose_config: Detectron2's defaults; the reference's full dump merges with no
unknown key."""

from __future__ import annotations

import pytest

from torchdet.config import get_cfg
from torchdet.projects.densepose import add_densepose_config


def test_defaults():
    cfg = get_cfg()
    add_densepose_config(cfg)
    h = cfg.MODEL.ROI_DENSEPOSE_HEAD
    assert cfg.MODEL.DENSEPOSE_ON is True
    assert h.NUM_STACKED_CONVS == 8 and h.CONV_HEAD_DIM == 512
    assert h.POOLER_TYPE == "ROIAlignV2" and h.POOLER_RESOLUTION == 28
    assert h.PREDICTOR_NAME == "DensePoseChartWithConfidencePredictor"
    assert h.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.MAX_NUM_VERTICES == 4936
    assert cfg.MODEL.HRNET.STAGE4.NUM_CHANNELS == [32, 64, 128, 256]
    assert cfg.DENSEPOSE_EVALUATION.MIN_IOU_THRESHOLD == 0.5
    assert cfg.BOOTSTRAP_MODEL.DEVICE == "cuda"


def test_reference_config_merges(parity_dir):
    path = parity_dir / "projects" / "densepose_rcnn_R50_FPN" / "config.yaml"
    if not path.is_file():
        pytest.skip(f"no {path}")
    cfg = get_cfg()
    add_densepose_config(cfg)
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.ROI_HEADS.NAME == "DensePoseROIHeads"
    assert cfg.MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM == 64

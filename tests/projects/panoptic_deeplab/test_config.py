"""add_panoptic_deeplab_config: Detectron2's defaults; the reference's config merges."""

from __future__ import annotations

import pytest

from torchdet.config import get_cfg
from torchdet.projects.deeplab import add_deeplab_config
from torchdet.projects.panoptic_deeplab import add_panoptic_deeplab_config


def test_defaults():
    cfg = get_cfg()
    add_panoptic_deeplab_config(cfg)
    assert cfg.MODEL.INS_EMBED_HEAD.NAME == "PanopticDeepLabInsEmbedHead"
    assert cfg.MODEL.INS_EMBED_HEAD.CENTER_LOSS_WEIGHT == 200.0
    assert cfg.MODEL.INS_EMBED_HEAD.OFFSET_LOSS_WEIGHT == 0.01
    assert cfg.MODEL.INS_EMBED_HEAD.NORM == "SyncBN"
    assert cfg.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA == 2048
    assert cfg.MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL == 7
    assert cfg.MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY == -1
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_TOP_K == 0.2
    assert cfg.INPUT.GAUSSIAN_SIGMA == 10
    assert cfg.SOLVER.OPTIMIZER == "ADAM"


def test_reference_config_merges(parity_dir):
    path = parity_dir / "projects" / "panoptic_deeplab_R50" / "config.yaml"
    if not path.is_file():
        pytest.skip(f"no {path}")
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_panoptic_deeplab_config(cfg)  # calling add_deeplab_config twice is harmless
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL == 41
    assert cfg.MODEL.INS_EMBED_HEAD.HEAD_CHANNELS == 16

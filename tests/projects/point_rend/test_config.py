"""add_pointrend_config and the packaged PointRend configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import torchdet.projects.point_rend as point_rend
from torchdet.config import get_cfg
from torchdet.projects.point_rend import add_pointrend_config

CONFIGS = Path(point_rend.__file__).parent / "configs"


def test_defaults():
    cfg = get_cfg()
    add_pointrend_config(cfg)
    assert cfg.MODEL.POINT_HEAD.NAME == "StandardPointHead"
    assert cfg.MODEL.POINT_HEAD.NUM_CLASSES == 80
    assert cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS == 196
    assert cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS == 784
    assert cfg.MODEL.POINT_HEAD.OVERSAMPLE_RATIO == 3
    assert cfg.MODEL.POINT_HEAD.IMPORTANCE_SAMPLE_RATIO == 0.75
    assert cfg.MODEL.ROI_MASK_HEAD.OUTPUT_SIDE_RESOLUTION == 7
    assert cfg.MODEL.ROI_MASK_HEAD.FC_DIM == 1024
    assert cfg.MODEL.ROI_MASK_HEAD.POINT_HEAD_ON is False
    assert cfg.MODEL.IMPLICIT_POINTREND.PARAMS_L2_REGULARIZER == 1e-5
    assert cfg.INPUT.COLOR_AUG_SSD is False
    assert cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA == 1.0


def test_reference_config_merges_to_the_same_values(parity_dir):
    path = parity_dir / "projects" / "pointrend_rcnn_R50_FPN" / "config.yaml"
    if not path.is_file():
        pytest.skip(f"no {path}")
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.merge_from_file(str(path))  # raises on any unknown key

    def normalise(x):
        if isinstance(x, dict):
            return {k: normalise(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [normalise(v) for v in x]
        return x

    assert normalise(yaml.safe_load(cfg.dump())) == normalise(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.yaml")), ids=lambda p: p.name)
def test_packaged_configs_merge(path):
    cfg = get_cfg()
    add_pointrend_config(cfg)
    cfg.merge_from_file(str(path))
    if "Implicit" in path.name or "implicit" in path.name:
        assert cfg.MODEL.ROI_MASK_HEAD.NAME == "ImplicitPointRendMaskHead"
        assert cfg.MODEL.POINT_HEAD.NAME == "ImplicitPointHead"
        assert cfg.INPUT.MASK_FORMAT == "bitmask"
    elif "InstanceSegmentation" in str(path):
        assert cfg.MODEL.MASK_ON
        assert cfg.MODEL.ROI_MASK_HEAD.NAME == "PointRendMaskHead"
        assert cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE == ""
        assert cfg.INPUT.MASK_FORMAT == "bitmask"
    else:
        assert cfg.MODEL.SEM_SEG_HEAD.NAME == "PointRendSemSegHead"


def test_merging_without_the_config_function_fails():
    cfg = get_cfg()
    with pytest.raises(KeyError):
        cfg.merge_from_file(str(CONFIGS / "InstanceSegmentation" / "Base-PointRend-RCNN-FPN.yaml"))

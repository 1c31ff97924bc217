"""add_deeplab_config / add_panoptic_deeplab_config: Detectron2's defaults, and the
reference's full config dump merges with no unknown key and resolves to the same values."""

from __future__ import annotations

import pytest
import yaml

from torchdet.config import get_cfg
from torchdet.projects.deeplab import add_deeplab_config


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _get(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def test_defaults():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE == "hard_pixel_mining"
    assert cfg.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES == ["res2"]
    assert cfg.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS == [48]
    assert cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS == 256
    assert cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS == [6, 12, 18]
    assert cfg.MODEL.RESNETS.RES5_MULTI_GRID == [1, 2, 4]
    assert cfg.MODEL.RESNETS.STEM_TYPE == "deeplab"
    assert cfg.SOLVER.POLY_LR_POWER == 0.9


def test_reference_config_resolves_to_the_same_values(parity_dir):
    path = parity_dir / "projects" / "deeplab_v3_plus_R50" / "config.yaml"
    if not path.is_file():
        pytest.skip(f"no {path}")
    cfg = get_cfg()
    add_deeplab_config(cfg)
    cfg.merge_from_file(str(path))  # raises on any unknown key
    ref = yaml.safe_load(path.read_text())
    diffs = []
    for key, value in _flatten(ref):
        ours = _get(cfg, key)
        if isinstance(ours, tuple):
            ours = list(ours)
        if ours != value and not (ours in ({}, []) and value in ({}, [])):
            diffs.append((key, ours, value))
    assert diffs == []

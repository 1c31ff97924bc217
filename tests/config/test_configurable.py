"""``configurable`` (the coordinator's) used with torchdet's CfgNode and LazyConfig dicts."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig

from torchdet.config import CfgNode, configurable, get_cfg


class Head:
    @configurable
    def __init__(self, *, num_classes: int, thresh: float = 0.5, name: str = "head"):
        self.num_classes, self.thresh, self.name = num_classes, thresh, name

    @classmethod
    def from_config(cls, cfg, name="from_cfg"):
        return {
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "name": name,
        }


@configurable(from_config=lambda cfg, scale=2: {"x": cfg.SEED, "scale": scale})
def build(x, scale=1, offset=0):
    return x * scale + offset


def test_class_from_yacs_cfg_and_overrides():
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    head = Head(cfg)
    assert (head.num_classes, head.thresh, head.name) == (3, 0.05, "from_cfg")
    head = Head(cfg, thresh=0.9, name="x")  # explicit arguments win over the config
    assert (head.num_classes, head.thresh, head.name) == (3, 0.9, "x")
    head = Head(cfg=cfg)
    assert head.num_classes == 3
    head = Head(num_classes=7)  # plain keyword arguments, no config
    assert (head.num_classes, head.thresh, head.name) == (7, 0.5, "head")


def test_function_from_cfg():
    cfg = get_cfg()
    cfg.SEED = 5
    assert build(cfg) == 10
    assert build(cfg, scale=3, offset=1) == 16
    assert build(4) == 4


def test_plain_cfgnode_and_dictconfig_count_as_configs():
    tree = {"MODEL": {"ROI_HEADS": {"NUM_CLASSES": 4, "SCORE_THRESH_TEST": 0.2}}}
    assert Head(CfgNode(tree)).num_classes == 4
    assert Head(DictConfig(tree)).thresh == 0.2


def test_missing_config_key_surfaces_as_attribute_error():
    with pytest.raises(AttributeError, match="ROI_HEADS"):
        Head(CfgNode({"MODEL": {}}))

"""``get_cfg()`` against the reference's ``get_cfg().dump()``, and the parity configs merging."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from torchdet.config import CfgNode, get_cfg, global_cfg, set_global_cfg
from torchdet.config.defaults import _C

_PARITY = Path(
    os.environ.get(
        "TORCHDET_PARITY_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "parity"
    )
)


def _typed(x):
    """Values with their types spelled out, so 1 != 1.0 != True; sequences as yacs loads them."""
    if isinstance(x, dict):
        return {k: _typed(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return ["seq", [_typed(v) for v in x]]
    return [type(x).__name__, x]


def _diff(a, b, prefix=""):
    out = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            out.append(f"{prefix}{k}: only in {'ours' if k in a else 'reference'}")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a[k] != b[k]:
            out.append(f"{prefix}{k}: ours {a[k]} != reference {b[k]}")
    return out


def test_defaults_equal_reference_dump(parity_dir):
    ref = yaml.safe_load((parity_dir / "configs" / "defaults.yaml").read_text())
    ours = yaml.safe_load(get_cfg().dump())
    assert _diff(_typed(ours), _typed(ref)) == []


def test_defaults_dump_is_textually_identical(parity_dir):
    # Same keys, values, key order and even the YAML anchors of the shared tuples.
    assert get_cfg().dump() == (parity_dir / "configs" / "defaults.yaml").read_text()


def _leaf_count(node):
    return sum(_leaf_count(v) if isinstance(v, dict) else 1 for v in node.values())


def test_defaults_have_192_leaves_and_detectron2_tuple_types():
    cfg = get_cfg()
    assert _leaf_count(cfg) == 192  # Detectron2's defaults.py has 192 leaf keys
    # Tuples where Detectron2 declares tuples: merging a list keeps the tuple type.
    assert cfg.INPUT.MIN_SIZE_TRAIN == (800,)
    assert cfg.SOLVER.STEPS == (30000,)
    assert cfg.DATASETS.TRAIN == ()
    assert cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS == (10.0, 10.0, 5.0, 5.0)
    assert cfg.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS == (512,) * 8
    assert cfg.MODEL.PIXEL_MEAN == [103.53, 116.28, 123.675]
    assert cfg.VERSION == 2


def test_get_cfg_returns_independent_mutable_copy():
    a, b = get_cfg(), get_cfg()
    assert a is not _C and not a.is_frozen()
    a.MODEL.ROI_HEADS.NUM_CLASSES = 3
    assert b.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert _C.MODEL.ROI_HEADS.NUM_CLASSES == 80


def test_set_global_cfg_replaces_content_in_place():
    holder = global_cfg
    cfg = CfgNode({"A": 1, "B": {"C": "x"}})
    try:
        set_global_cfg(cfg)
        assert holder is global_cfg
        assert global_cfg.B.C == "x" and global_cfg.A == 1
    finally:
        set_global_cfg(CfgNode())
    assert len(global_cfg) == 0


def _parity_configs(kind):
    return sorted(p.parent.name for p in (_PARITY / kind).glob("*/config.yaml"))


@pytest.mark.parametrize("name", _parity_configs("models") or ["<parity bundle absent>"])
def test_parity_model_config_merges(parity_dir, name):
    path = parity_dir / "models" / name / "config.yaml"
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    # A full dump merged over the defaults gives back exactly that dump.
    assert _diff(_typed(yaml.safe_load(cfg.dump())), _typed(yaml.safe_load(path.read_text()))) == []


# Project configs need the keys that each project's add_*_config function adds.
_PROJECT_CONFIG_FUNCS = {
    "pointrend_rcnn_R50_FPN": [("torchdet.projects.point_rend", "add_pointrend_config")],
    "densepose_rcnn_R50_FPN": [("torchdet.projects.densepose", "add_densepose_config")],
    "deeplab_v3_plus_R50": [("torchdet.projects.deeplab", "add_deeplab_config")],
    "panoptic_deeplab_R50": [
        ("torchdet.projects.deeplab", "add_deeplab_config"),
        ("torchdet.projects.panoptic_deeplab", "add_panoptic_deeplab_config"),
    ],
}


@pytest.mark.parametrize("name", _parity_configs("projects") or ["<parity bundle absent>"])
def test_parity_project_config_merges(parity_dir, name):
    import importlib

    cfg = get_cfg()
    for module, func in _PROJECT_CONFIG_FUNCS.get(name, []):
        try:
            add = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as e:
            pytest.skip(f"{module}.{func} is needed for the project keys and is not there yet: {e}")
        add(cfg)
    path = parity_dir / "projects" / name / "config.yaml"
    cfg.merge_from_file(str(path))
    assert _diff(_typed(yaml.safe_load(cfg.dump())), _typed(yaml.safe_load(path.read_text()))) == []


def test_project_config_without_project_keys_names_the_unknown_key(parity_dir):
    path = parity_dir / "projects" / "pointrend_rcnn_R50_FPN" / "config.yaml"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    with pytest.raises(KeyError, match=r"Non-existent config key: \S+.*config.yaml"):
        get_cfg().merge_from_file(str(path))

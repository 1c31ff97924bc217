"""The packaged yacs model-zoo configs resolve to the reference's resolved configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import torchdet
from torchdet.config import get_cfg

CONFIGS = Path(torchdet.__file__).resolve().parent / "model_zoo" / "configs"
_PARITY = Path(
    os.environ.get(
        "TORCHDET_PARITY_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "parity"
    )
)
_REF_NAMES = sorted(
    str(p.relative_to(_PARITY / "configs" / "zoo"))
    for p in (_PARITY / "configs" / "zoo").glob("*/*.yaml")
)
_ALL_YAML = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))


def _diff(a, b, prefix=""):
    out = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            out.append(f"{prefix}{k}: only in {'ours' if k in a else 'reference'}")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a[k] != b[k] or type(a[k]) is not type(b[k]):
            out.append(f"{prefix}{k}: ours {a[k]!r} != reference {b[k]!r}")
    return out


def test_reference_lists_52_configs(parity_dir):
    assert len(_REF_NAMES) == 52
    urls = (parity_dir / "configs" / "zoo_checkpoint_urls.json").read_text()
    assert all(f'"{name}"' in urls for name in _REF_NAMES)


@pytest.mark.parametrize("name", _REF_NAMES or ["<parity bundle absent>"])
def test_zoo_config_resolves_like_reference(parity_dir, name):
    ours_path = CONFIGS / name
    assert ours_path.is_file(), f"torchdet does not package {name}"
    cfg = get_cfg()
    cfg.merge_from_file(str(ours_path))
    ours = yaml.safe_load(cfg.dump())
    ref = yaml.safe_load((parity_dir / "configs" / "zoo" / name).read_text())
    assert _diff(ours, ref) == []


@pytest.mark.parametrize("name", _ALL_YAML)
def test_every_packaged_yaml_loads_safely(name):
    # merge_from_file uses safe YAML by default: no packaged config may need unsafe tags.
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / name))
    assert cfg.VERSION == 2
    assert "_BASE_" not in cfg


def test_known_zoo_values():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_3x.yaml"))
    assert cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    assert cfg.MODEL.MASK_ON is True
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    assert cfg.SOLVER.STEPS == (210000, 250000) and cfg.SOLVER.MAX_ITER == 270000
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640, 672, 704, 736, 768, 800)
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",)

    retina = get_cfg()
    retina.merge_from_file(str(CONFIGS / "COCO-Detection" / "retinanet_R_50_FPN_1x.yaml"))
    sizes = retina.MODEL.ANCHOR_GENERATOR.SIZES
    # x * 2**(k/3) for k = 0, 1, 2, exactly as Detectron2 computes them
    expected = [[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]]
    assert sizes == expected


def test_lvis_v1_and_extra_configs():
    # Not in the parity bundle: check the values that define them.
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "LVISv1-InstanceSegmentation" / "mask_rcnn_R_50_FPN_1x.yaml"))
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203
    assert cfg.DATASETS.TRAIN == ("lvis_v1_train",)
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 300 and cfg.SOLVER.MAX_ITER == 180000
    for group in ("LVISv1-InstanceSegmentation",):
        assert len(list((CONFIGS / group).glob("*.yaml"))) == 3

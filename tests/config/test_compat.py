"""Config versions: upgrade/downgrade round trips and loading v1 files."""

from __future__ import annotations

import logging

import pytest
import yaml

from torchdet.config import downgrade_config, get_cfg, upgrade_config
from torchdet.config.compat import ConverterV1, ConverterV2, guess_version, latest_version


def test_latest_version_is_2():
    assert latest_version() == 2 == get_cfg().VERSION


def test_downgrade_to_v1_renames_and_upgrade_restores():
    cfg = get_cfg()
    cfg.MODEL.WEIGHTS = "w.pkl"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.3
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[8, 16]]
    old = downgrade_config(cfg, to_version=1)
    assert old.VERSION == 1
    assert old.MODEL.WEIGHT == "w.pkl" and "WEIGHTS" not in old.MODEL
    assert old.MODEL.ROI_HEADS.SCORE_THRESH == 0.3
    assert old.MODEL.RPN.ANCHOR_SIZES == [[8, 16]] == old.MODEL.RETINANET.ANCHOR_SIZES
    assert old.MODEL.RETINANET.ANCHOR_STRIDES == []
    assert old.TEST.AUG_ON is False and "AUG" not in old.TEST  # the emptied section is removed
    assert old.MODEL.PANOPTIC_FPN.COMBINE_ON is True and "COMBINE" not in old.MODEL.PANOPTIC_FPN
    assert cfg.MODEL.WEIGHTS == "w.pkl" and cfg.VERSION == 2  # the input is not modified
    new = upgrade_config(old)
    assert new == cfg
    assert yaml.safe_load(new.dump()) == yaml.safe_load(cfg.dump())


def test_downgrade_to_v0_and_back_round_trips():
    cfg = get_cfg()
    old = downgrade_config(cfg, to_version=0)
    assert old.MODEL.RPN_HEAD.NAME == "StandardRPNHead" and "HEAD_NAME" not in old.MODEL.RPN
    assert upgrade_config(old) == cfg


def test_upgrade_v1_retinanet_takes_retinanet_anchors():
    old = downgrade_config(get_cfg(), to_version=1)
    old.MODEL.META_ARCHITECTURE = "RetinaNet"
    old.MODEL.RETINANET.ANCHOR_SIZES = [[32, 40, 50]]
    old.MODEL.RPN.ANCHOR_SIZES = [[1]]
    new = upgrade_config(old)
    assert new.MODEL.ANCHOR_GENERATOR.SIZES == [[32, 40, 50]]
    assert "ANCHOR_SIZES" not in new.MODEL.RPN and "ANCHOR_STRIDES" not in new.MODEL.RETINANET


def test_version_direction_errors():
    cfg = get_cfg()
    with pytest.raises(ValueError, match="Cannot upgrade a v2 config to v1"):
        upgrade_config(cfg, to_version=1)
    with pytest.raises(ValueError, match="Cannot downgrade a v1 config to v2"):
        downgrade_config(downgrade_config(cfg, 1), to_version=2)


def test_guess_version():
    cfg = get_cfg()
    assert guess_version(cfg, "x.yaml") == 2
    old = downgrade_config(cfg, 1)
    del old["VERSION"]
    assert guess_version(old, "x.yaml") == 1


def test_renames_match_detectron2():
    assert ConverterV1.RENAME == [("MODEL.RPN_HEAD.NAME", "MODEL.RPN.HEAD_NAME")]
    renames = dict(ConverterV2.RENAME)
    assert len(renames) == 18
    assert renames["MODEL.WEIGHT"] == "MODEL.WEIGHTS"
    assert renames["TEST.AUG_MIN_SIZES"] == "TEST.AUG.MIN_SIZES"
    assert renames["MODEL.PANOPTIC_FPN.SEMANTIC_LOSS_SCALE"] == "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT"


def test_merging_v1_file_upgrades_with_warning(tmp_path, caplog):
    path = tmp_path / "v1.yaml"
    path.write_text(
        "VERSION: 1\n"
        "MODEL:\n  WEIGHT: model.pkl\n  RPN:\n    ANCHOR_SIZES: [[16, 32]]\n"
        "  ROI_HEADS:\n    NMS: 0.4\n"
        "TEST:\n  AUG_ON: true\n  DETECTIONS_PER_IMG: 50\n"
    )
    cfg = get_cfg()
    with caplog.at_level(logging.WARNING):
        cfg.merge_from_file(str(path))
    assert "old v1 config" in caplog.text and str(path) in caplog.text
    assert cfg.VERSION == 2
    assert cfg.MODEL.WEIGHTS == "model.pkl" and "WEIGHT" not in cfg.MODEL
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[16, 32]]
    assert cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST == 0.4
    assert cfg.TEST.AUG.ENABLED is True and cfg.TEST.DETECTIONS_PER_IMAGE == 50
    # everything else keeps its default
    ref = get_cfg()
    assert cfg.SOLVER == ref.SOLVER and cfg.INPUT == ref.INPUT


def test_unversioned_v1_file_is_guessed(tmp_path):
    path = tmp_path / "guess.yaml"
    path.write_text("MODEL:\n  WEIGHT: a.pkl\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.WEIGHTS == "a.pkl" and cfg.VERSION == 2


def test_future_version_rejected(tmp_path):
    path = tmp_path / "v3.yaml"
    path.write_text("VERSION: 3\n")
    with pytest.raises(ValueError, match="VERSION 3.*v3.yaml|v3.yaml.*VERSION 3"):
        get_cfg().merge_from_file(str(path))

"""CfgNode: attribute access, freezing, typed merging, _BASE_ chains, YAML round trips."""

from __future__ import annotations

import copy
import pickle

import pytest
import yaml

from torchdet.config import CfgNode, ConfigKeyError, ConfigTypeError, get_cfg, load_cfg


def _small() -> CfgNode:
    return CfgNode(
        {
            "MODEL": {"NUM_CLASSES": 80, "SIZES": (32, 64), "NAME": "rcnn", "THRESH": 0.5},
            "SOLVER": {"STEPS": [1, 2], "BIAS": None, "AMP": {"ENABLED": False}},
        }
    )


def test_attribute_and_item_access_are_the_same_data():
    cfg = _small()
    assert isinstance(cfg.MODEL, CfgNode)
    assert cfg.MODEL.NUM_CLASSES == cfg["MODEL"]["NUM_CLASSES"] == 80
    cfg.MODEL.NUM_CLASSES = 3
    assert cfg["MODEL"]["NUM_CLASSES"] == 3
    cfg.NEW = {"A": 1}  # plain dicts become nodes
    assert isinstance(cfg.NEW, CfgNode) and cfg.NEW.A == 1


def test_missing_attribute_suggests_close_key():
    with pytest.raises(AttributeError, match="NUM_CLASSES"):
        _ = _small().MODEL.NUM_CLASS


def test_invalid_leaf_type_rejected():
    with pytest.raises(TypeError, match="MODEL.X.*object"):
        CfgNode({"MODEL": {"X": object()}})
    cfg = CfgNode()
    with pytest.raises(TypeError, match="set"):
        cfg.A = {1, 2}


def test_frozen_config_raises_on_every_kind_of_write():
    cfg = _small()
    cfg.freeze()
    assert cfg.is_frozen() and cfg.SOLVER.AMP.is_frozen()
    with pytest.raises(AttributeError, match="frozen"):
        cfg.MODEL.NUM_CLASSES = 2
    with pytest.raises(AttributeError, match="frozen"):
        cfg["MODEL"] = {}
    with pytest.raises(AttributeError, match="frozen"):
        cfg.SOLVER.AMP.ENABLED = True
    with pytest.raises(AttributeError, match="frozen"):
        del cfg.MODEL["NAME"]
    with pytest.raises(AttributeError, match="frozen"):
        cfg.MODEL.update({"NAME": "x"})
    with pytest.raises(AttributeError, match="frozen"):
        cfg.merge_from_list(["MODEL.NUM_CLASSES", "2"])
    assert cfg.MODEL.NUM_CLASSES == 80 and cfg.MODEL.NAME == "rcnn"
    cfg.defrost()
    cfg.SOLVER.AMP.ENABLED = True
    assert cfg.SOLVER.AMP.ENABLED is True


def test_clone_is_deep_and_keeps_frozen_state():
    cfg = _small()
    cfg.freeze()
    other = cfg.clone()
    assert other == cfg and other.is_frozen() and other.MODEL.is_frozen()
    other.defrost()
    other.SOLVER.STEPS.append(3)
    assert cfg.SOLVER.STEPS == [1, 2]
    # pickle and deepcopy round trip as well
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert copy.deepcopy(cfg).is_frozen()


def test_merge_from_list_parses_literals_like_yacs():
    cfg = _small()
    cfg.merge_from_list(
        ["MODEL.NUM_CLASSES", "3", "MODEL.SIZES", "[16, 8]", "MODEL.NAME", "retina",
         "MODEL.THRESH", "1e-4", "SOLVER.BIAS", "0.5", "SOLVER.STEPS", "(5,)"]
    )  # fmt: skip
    assert cfg.MODEL.NUM_CLASSES == 3
    assert cfg.MODEL.SIZES == (16, 8)  # list coerced to the tuple of the default
    assert cfg.MODEL.NAME == "retina"  # not a literal: kept as a string
    assert abs(cfg.MODEL.THRESH - 1e-4) < 1e-12
    assert cfg.SOLVER.BIAS == 0.5  # None accepts any type
    assert cfg.SOLVER.STEPS == [5]


def test_merge_from_list_errors():
    cfg = _small()
    with pytest.raises(ValueError, match="odd length"):
        cfg.merge_from_list(["MODEL.NUM_CLASSES"])
    with pytest.raises(KeyError, match="MODEL.NUM_CLASS\\b.*Did you mean 'MODEL.NUM_CLASSES'"):
        cfg.merge_from_list(["MODEL.NUM_CLASS", "3"])
    with pytest.raises(KeyError, match="Non-existent config key: NOPE"):
        cfg.merge_from_list(["NOPE.X", "3"])


def test_unknown_key_suggests_closest_full_key_from_defaults():
    cfg = get_cfg()
    with pytest.raises(KeyError) as info:
        cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASS", "3"])
    assert "MODEL.ROI_HEADS.NUM_CLASS" in str(info.value)
    assert "Did you mean 'MODEL.ROI_HEADS.NUM_CLASSES'?" in str(info.value)
    assert isinstance(info.value, ConfigKeyError)


def test_type_mismatch_names_key_expected_given_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3.5\n")
    with pytest.raises(ConfigTypeError) as info:
        get_cfg().merge_from_file(str(path))
    msg = str(info.value)
    assert "MODEL.ROI_HEADS.NUM_CLASSES" in msg
    assert "expected int" in msg and "given float" in msg
    assert str(path) in msg
    # yacs raised ValueError for this; both kinds of except clauses keep working.
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_bool_and_int_are_different_types():
    cfg = _small()
    with pytest.raises(ConfigTypeError, match="SOLVER.AMP.ENABLED: expected bool.*given int"):
        cfg.merge_from_list(["SOLVER.AMP.ENABLED", "1"])


def test_mapping_over_leaf_is_a_type_error():
    cfg = _small()
    with pytest.raises(ConfigTypeError, match="MODEL.NAME"):
        cfg.merge_from_other_cfg({"MODEL": {"NAME": {"X": 1}}})


def test_unknown_key_in_file_names_file_and_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("SOLVER:\n  BASE_RL: 0.1\n")
    with pytest.raises(KeyError) as info:
        get_cfg().merge_from_file(str(path))
    assert "SOLVER.BASE_RL" in str(info.value) and str(path) in str(info.value)
    assert "SOLVER.BASE_LR" in str(info.value)


def test_new_allowed_accepts_new_keys():
    cfg = CfgNode({"A": 1}, new_allowed=True)
    cfg.merge_from_other_cfg({"B": {"C": 2}, "A": 5})
    assert cfg.B.C == 2 and cfg.A == 5
    strict = CfgNode({"A": 1})
    with pytest.raises(KeyError, match="Non-existent config key: B"):
        strict.merge_from_other_cfg({"B": 1})
    strict.set_new_allowed(True)
    strict.merge_from_other_cfg({"B": 1})
    assert strict.B == 1 and strict.is_new_allowed()


def test_deprecated_and_renamed_keys(tmp_path):
    cfg = _small()
    cfg.register_deprecated_key("MODEL.OLD")
    cfg.register_renamed_key("MODEL.CLASSES", "MODEL.NUM_CLASSES", message="counts foreground")
    cfg.merge_from_other_cfg({"MODEL": {"OLD": 1, "NUM_CLASSES": 4}})
    assert "OLD" not in cfg.MODEL and cfg.MODEL.NUM_CLASSES == 4
    cfg.merge_from_list(["MODEL.OLD", "3"])  # ignored as well
    with pytest.raises(
        KeyError, match="MODEL.CLASSES was renamed to MODEL.NUM_CLASSES.*foreground"
    ):
        cfg.merge_from_list(["MODEL.CLASSES", "3"])
    path = tmp_path / "renamed.yaml"
    path.write_text("MODEL:\n  CLASSES: 3\n")
    with pytest.raises(KeyError, match="renamed.yaml"):
        cfg.merge_from_file(str(path))
    with pytest.raises(KeyError, match="already"):
        cfg.register_deprecated_key("MODEL.OLD")


def test_dump_load_round_trip_is_identical():
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TRAIN", "('a', 'b')", "SOLVER.WEIGHT_DECAY_BIAS", "0.0"])
    text = cfg.dump()
    loaded = load_cfg(text)
    assert yaml.safe_load(loaded.dump()) == yaml.safe_load(text)
    again = get_cfg()
    again.merge_from_other_cfg(loaded)
    assert yaml.safe_load(again.dump()) == yaml.safe_load(text)
    # Merging over the defaults restores the declared outer types (yacs: nested lists stay lists).
    assert again.DATASETS.TRAIN == ("a", "b") and again.SOLVER.STEPS == (30000,)
    assert again.SOLVER.WEIGHT_DECAY_BIAS == 0.0
    assert cfg.dump(default_flow_style=True) != text  # kwargs reach yaml.safe_dump


def test_load_cfg_from_file_object(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("A:\n  B: [1, 2]\n")
    with open(path) as f:
        cfg = CfgNode.load_cfg(f)
    assert cfg.A.B == [1, 2]
    with pytest.raises(TypeError, match="mapping"):
        load_cfg("- 1\n- 2\n")
    assert load_cfg("") == {}


def test_str_lists_nested_keys():
    text = str(_small())
    assert "MODEL:\n  NAME: rcnn" in text
    assert "  AMP:\n    ENABLED: False" in text


def test_base_chain_relative_and_recursive(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "base" / "root.yaml").write_text(
        "MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 10\n    NMS_THRESH_TEST: 0.3\nSEED: 1\n"
    )
    (tmp_path / "base" / "mid.yaml").write_text(
        "_BASE_: root.yaml\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 20\nSOLVER:\n  STEPS: [1, 2]\n"
    )
    (tmp_path / "sub" / "leaf.yaml").write_text(
        "_BASE_: ../base/mid.yaml\nMODEL:\n  ROI_HEADS:\n    SCORE_THRESH_TEST: 0.9\n"
    )
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "sub" / "leaf.yaml"))
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20  # mid overrides root
    assert cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST == 0.3  # inherited from root through mid
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.9
    assert cfg.SEED == 1 and cfg.SOLVER.STEPS == (1, 2)
    merged = CfgNode.load_yaml_with_base(str(tmp_path / "sub" / "leaf.yaml"))
    assert "_BASE_" not in merged and merged["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == 20


def test_base_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("_BASE_: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml.*c.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "c.yaml"))
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "nowhere.yaml"))
    (tmp_path / "d.yaml").write_text("_BASE_: e.yaml\nSEED: {X: 1}\n")
    (tmp_path / "e.yaml").write_text("SEED: 3\n")
    with pytest.raises(TypeError, match="Cannot inherit key SEED"):
        get_cfg().merge_from_file(str(tmp_path / "d.yaml"))


def test_unsafe_yaml_needs_opt_in(tmp_path):
    path = tmp_path / "unsafe.yaml"
    path.write_text("MODEL:\n  PIXEL_STD: !!python/tuple [2.0, 2.0, 2.0]\n")
    with pytest.raises(ValueError, match="allow_unsafe"):
        get_cfg().merge_from_file(str(path))
    cfg = get_cfg()
    cfg.merge_from_file(str(path), allow_unsafe=True)
    assert cfg.MODEL.PIXEL_STD == [2.0, 2.0, 2.0]


def test_computed_keys_can_only_be_reset_to_the_same_value():
    cfg = CfgNode()
    cfg.COMPUTED_X = 1
    cfg.COMPUTED_X = 1
    with pytest.raises(KeyError, match="COMPUTED_X"):
        cfg.COMPUTED_X = 2

"""LazyConfig: LazyCall, load (relative imports), save/load, overrides, to_py, instantiate."""

from __future__ import annotations

import dataclasses
import logging
import textwrap
from pathlib import Path

import pytest
from omegaconf import DictConfig

from torchdet.config import L, LazyCall, LazyConfig, dump_dataclass, instantiate


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


@dataclasses.dataclass
class Segment:
    start: Point
    points: list


class Adder:
    def __init__(self, a, b=1):
        self.a, self.b = a, b

    def total(self):
        return self.a + self.b


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def cfg_tree(tmp_path):
    """root.py importing from sibling and nested config files, with relative imports."""
    _write(
        tmp_path / "common" / "base.py",
        """
        from torchdet.config import LazyCall as L
        from collections import OrderedDict

        model = L(OrderedDict)(a=1, b=[1, 2])
        plain = dict(lr=0.1, steps=[3, 4])
        _private = dict(x=1)
        NUMBER = 3
        """,
    )
    _write(
        tmp_path / "common" / "nested" / "leaf.py",
        """
        from ..base import plain as optim  # two levels: nested -> common
        optim.lr = 0.5
        leaf = dict(value="leaf")
        """,
    )
    _write(
        tmp_path / "configs" / "root.py",
        """
        from ..common.base import model, plain
        from ..common.nested.leaf import optim, leaf
        from ..common import base as base_module
        from . import sibling

        model.a = 10
        extra = dict(from_sibling=sibling.value["v"], number=base_module.NUMBER)
        """,
    )
    _write(tmp_path / "configs" / "sibling.py", "value = dict(v=7)\n")
    return tmp_path


def test_lazycall_records_target_and_kwargs():
    cfg = L(Adder)(a=1, b=2)
    assert isinstance(cfg, DictConfig)
    assert cfg._target_ is Adder and cfg.a == 1 and cfg.b == 2
    assert LazyCall is L
    assert L("builtins.dict")(x=1)._target_ == "builtins.dict"
    with pytest.raises(TypeError, match="callable"):
        L(3)
    # dataclass types cannot live in omegaconf: stored as their dotted name
    assert L(Point)(x=1)._target_.endswith("test_lazy.Point")


def test_load_py_with_relative_imports(cfg_tree):
    cfg = LazyConfig.load(str(cfg_tree / "configs" / "root.py"))
    assert set(cfg.keys()) == {"model", "plain", "optim", "leaf", "extra"}
    assert cfg.model.a == 10 and list(cfg.model.b) == [1, 2]
    assert cfg.optim.lr == 0.5  # edited by leaf.py
    assert cfg.plain.lr == 0.1  # each import loads the file afresh: no leak between files
    assert cfg.leaf.value == "leaf"
    assert cfg.extra.from_sibling == 7 and cfg.extra.number == 3
    assert isinstance(cfg.plain, DictConfig)  # plain dicts become DictConfigs
    model = instantiate(cfg.model)
    assert dict(model) == {"a": 10, "b": [1, 2]}


def test_load_keys_and_errors(cfg_tree):
    path = str(cfg_tree / "common" / "base.py")
    model = LazyConfig.load(path, "model")
    assert model.a == 1
    model, plain = LazyConfig.load(path, ("model", "plain"))
    assert plain.steps == [3, 4]
    with pytest.raises(KeyError, match="'modle'.*Did you mean 'model'"):
        LazyConfig.load(path, "modle")
    assert "_private" not in LazyConfig.load(path) and "NUMBER" not in LazyConfig.load(path)
    with pytest.raises(ValueError, match=r"\.py, \.yaml"):
        LazyConfig.load(str(cfg_tree / "x.txt"))
    with pytest.raises(FileNotFoundError, match="nope.py"):
        LazyConfig.load(str(cfg_tree / "nope.py"))


def test_bad_relative_import_names_missing_file(tmp_path):
    path = _write(tmp_path / "bad.py", "from .missing import x\n")
    with pytest.raises(ImportError, match="missing.py does not exist"):
        LazyConfig.load(str(path))
    path = _write(tmp_path / "bad2.py", "from .base2 import nothing\n")
    _write(tmp_path / "base2.py", "a = dict(x=1)\n")
    with pytest.raises(ImportError, match="nothing"):
        LazyConfig.load(str(path))
    path = _write(tmp_path / "syntax.py", "a = dict(\n")
    with pytest.raises(SyntaxError, match="syntax.py"):
        LazyConfig.load(str(path))


def test_load_rel_is_relative_to_the_calling_file(cfg_tree):
    path = _write(
        cfg_tree / "configs" / "uses_rel.py",
        """
        from torchdet.config import LazyConfig
        plain = LazyConfig.load_rel("../common/base.py", "plain")
        plain.lr = 0.3
        """,
    )
    assert LazyConfig.load(str(path)).plain.lr == 0.3
    assert LazyConfig.load(str(cfg_tree / "common" / "base.py")).plain.lr == 0.1


def test_save_load_round_trip(tmp_path, cfg_tree):
    cfg = LazyConfig.load(str(cfg_tree / "configs" / "root.py"))
    cfg.extra.ref = "${..optim.lr}"  # interpolations survive unresolved
    cfg.adder = L(Adder)(a=L(Adder)(a=2, b=3), b=4)
    out = tmp_path / "saved.yaml"
    LazyConfig.save(cfg, str(out))
    assert not (tmp_path / "saved.yaml.pkl").exists()
    text = out.read_text()
    assert "_target_: collections.OrderedDict" in text
    assert "${..optim.lr}" in text
    loaded = LazyConfig.load(str(out))
    assert loaded.model.a == 10 and loaded.extra.ref == 0.5
    assert loaded.adder._target_.endswith("test_lazy.Adder")
    adder = instantiate(loaded.adder)
    assert isinstance(adder.a, Adder) and adder.a.total() == 5 and adder.b == 4
    LazyConfig.save(loaded, str(tmp_path / "again.yaml"))
    assert (tmp_path / "again.yaml").read_text() == text


def test_save_marks_unserializable_values(tmp_path, caplog):
    cfg = DictConfig({"a": {"obj": Adder(1)}, "fine": 1}, flags={"allow_objects": True})
    out = tmp_path / "s.yaml"
    with caplog.at_level(logging.WARNING):
        LazyConfig.save(cfg, out)  # a Path works too
    assert "a.obj" in caplog.text
    loaded = LazyConfig.load(str(out))
    assert loaded.fine == 1 and loaded.a.obj.startswith("<unserializable Adder:")
    assert (tmp_path / "s.yaml.pkl").exists()  # the full object graph is kept beside it


def test_apply_overrides(cfg_tree):
    cfg = LazyConfig.load(str(cfg_tree / "configs" / "root.py"))
    LazyConfig.apply_overrides(
        cfg,
        [
            "model.a=3",
            "optim.lr=1e-3",
            "leaf.value='quoted str'",
            "plain.steps=[5, 6]",
            "extra.number=null",
            "+extra.new.deep=true",
            "~plain.lr",
        ],
    )
    assert cfg.model.a == 3
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.leaf.value == "quoted str"
    assert list(cfg.plain.steps) == [5, 6] and "lr" not in cfg.plain
    assert cfg.extra.number is None
    assert cfg.extra.new.deep is True


def test_apply_overrides_errors(cfg_tree):
    cfg = LazyConfig.load(str(cfg_tree / "configs" / "root.py"))
    with pytest.raises(KeyError, match="optim.rl.*Did you mean 'optim.lr'"):
        LazyConfig.apply_overrides(cfg, ["optim.rl=1"])
    with pytest.raises(KeyError, match="not a config"):
        LazyConfig.apply_overrides(cfg, ["optim.lr.x=1"])
    with pytest.raises(ValueError, match="key=value"):
        LazyConfig.apply_overrides(cfg, ["optim.lr"])
    with pytest.raises(KeyError, match="nothere"):
        LazyConfig.apply_overrides(cfg, ["~optim.nothere"])


def test_to_py_is_valid_python_describing_the_config(cfg_tree):
    cfg = LazyConfig.load(str(cfg_tree / "configs" / "root.py"))
    cfg.adder = L(Adder)(a=L(Adder)(a=2, b="x" * 120), b=4)
    code = LazyConfig.to_py(cfg)
    assert "cfg.model = collections.OrderedDict(a=10, b=[1, 2])" in code
    assert "cfg.optim.lr = 0.5" in code
    assert "cfg.adder = " in code and "test_lazy.Adder(\n" in code  # long call split
    compile(code, "<to_py>", "exec")


def test_instantiate_recursive_with_strings_lists_and_interpolation():
    cfg = DictConfig(
        {
            "inner": L("collections.OrderedDict")(k=1),
            "outer": L(Adder)(a="${..base}", b=L(Adder)(a=1, b=2)),
            "base": 5,
            "many": [L(Adder)(a=1), {"x": L(Adder)(a=2)}, 3],
        },
        flags={"allow_objects": True},
    )
    out = instantiate(cfg)
    assert dict(out.inner) == {"k": 1}
    assert out.outer.a == 5 and isinstance(out.outer.b, Adder) and out.outer.b.total() == 3
    assert isinstance(out.many[0], Adder) and out.many[1]["x"].a == 2 and out.many[2] == 3
    assert instantiate([L(Adder)(a=1)])[0].a == 1
    assert instantiate({"_target_": Adder, "a": 4}).total() == 5
    plain = {"no": "targets"}
    assert instantiate(plain) is plain


def test_instantiate_errors_name_target_and_key():
    with pytest.raises(ImportError, match="no.such.Thing.*<root>.m"):
        instantiate({"m": {"_target_": "no.such.Thing"}})
    with pytest.raises(TypeError, match="Adder.*<root>.m.*unexpected"):
        instantiate({"m": L(Adder)(a=1, c=2)})
    with pytest.raises(TypeError, match="not callable"):
        instantiate({"_target_": "math.pi"})


def test_dataclasses_round_trip():
    seg = Segment(start=Point(1, 2), points=[Point(3), Point(4, 5)])
    dumped = dump_dataclass(seg)
    assert dumped["_target_"].endswith("test_lazy.Segment")
    assert dumped["start"] == {"_target_": dumped["start"]["_target_"], "x": 1, "y": 2}
    assert instantiate(dumped) == seg
    assert instantiate(DictConfig(dumped)) == seg
    with pytest.raises(TypeError, match="dataclass instance"):
        dump_dataclass(Segment)
    from omegaconf import OmegaConf

    assert instantiate(OmegaConf.structured(Point(7))) == Point(7)


def test_load_rel_needs_a_calling_file():
    with pytest.raises(ValueError, match="from a file"):
        exec("LazyConfig.load_rel('base.py')", {"LazyConfig": LazyConfig})


def test_target_may_itself_be_a_lazy_config():
    # The target is built first: here a factory call returning the class to call.
    cfg = L(L("torchdet.utils.registry.locate")(name="collections.OrderedDict"))(a=1)
    out = instantiate(cfg)
    assert type(out).__name__ == "OrderedDict" and dict(out) == {"a": 1}
    assert instantiate(3) == 3 and instantiate("text") == "text"

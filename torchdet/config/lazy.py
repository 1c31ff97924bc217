"""LazyConfig: configs written as Python code that describes calls instead of making them.

``LazyCall(f)(x=1)`` (alias ``L``) returns the omegaconf ``DictConfig`` ``{"_target_": f,
"x": 1}``; :func:`~torchdet.config.instantiate` performs the call later, after the user has
edited any argument. A config file is a Python module whose top-level dicts are the config::

    # my_config.py
    from torchdet.config import LazyCall as L
    from torchdet.modeling import GeneralizedRCNN
    from ..common.optim import SGD as optimizer   # other config files, imported relatively

    model = L(GeneralizedRCNN)(...)
    optimizer.lr = 0.01

``LazyConfig.load("my_config.py")`` runs it and returns ``{"model": ..., "optimizer": ...}``;
``save`` writes YAML that ``load`` reads back; ``apply_overrides`` edits a loaded config from
``"a.b=1"`` strings (command-line style); ``to_py`` prints it as Python.

Relative imports in config files are resolved against the importing file's folder and load the
imported file afresh each time, so config files need not be packages and editing an imported
config in one file never leaks into another.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import pickle
import re
import types
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import is_dataclass
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from .instantiate import _convert_target_to_string

__all__ = ["L", "LazyCall", "LazyConfig"]

logger = logging.getLogger(__name__)

# Config files run as modules of this (non-existent) package; the import hook recognises them by it.
_CFG_PACKAGE_NAME = "torchdet._cfg_loader"


class LazyCall:
    """Wrap a callable so that calling it records the call as a config instead of making it.

    ``LazyCall(torchdet.layers.Conv2d)(in_channels=3, out_channels=8)`` returns the
    ``DictConfig`` ``{"_target_": Conv2d, "in_channels": 3, "out_channels": 8}``.

    Args:
        target: a class or function, its dotted import path, or a mapping that
            :func:`instantiate` turns into a callable.
    """

    def __init__(self, target: Callable | str | Mapping) -> None:
        if not (callable(target) or isinstance(target, str | Mapping)):
            raise TypeError(
                "The target of LazyCall must be a callable, its dotted name or a config that "
                f"builds one; got {target!r}"
            )
        self._target = target

    def __call__(self, **kwargs: Any) -> DictConfig:
        # omegaconf cannot hold a dataclass type as a value (omegaconf issue 784): use its name.
        target = (
            _convert_target_to_string(self._target)
            if is_dataclass(self._target) and isinstance(self._target, type)
            else self._target
        )
        kwargs["_target_"] = target
        return DictConfig(content=kwargs, flags={"allow_objects": True})


L = LazyCall


def _visit_dict_config(cfg: Any, func: Callable[[DictConfig], None]) -> None:
    """Apply ``func`` to every ``DictConfig`` inside ``cfg`` (children first is not guaranteed)."""
    if isinstance(cfg, DictConfig):
        func(cfg)
        for v in cfg.values():
            _visit_dict_config(v, func)
    elif isinstance(cfg, ListConfig):
        for v in cfg:
            _visit_dict_config(v, func)


def _validate_py_syntax(filename: str) -> None:
    with open(filename, encoding="utf-8") as f:
        content = f.read()
    try:
        ast.parse(content, filename=filename)
    except SyntaxError as e:
        raise SyntaxError(f"Config file {filename} has a syntax error: {e}") from e


def _cast_to_config(obj: Any) -> Any:
    # Plain dicts defined in config files become DictConfigs so that attribute access works.
    if isinstance(obj, dict):
        return DictConfig(obj, flags={"allow_objects": True})
    return obj


def _random_package_name(filename: str) -> str:
    # A fresh package per load, so that each load executes the file anew.
    return f"{_CFG_PACKAGE_NAME}{uuid.uuid4().hex[:8]}.{os.path.basename(filename)}"


def _find_relative_path(original_file: str, relative_import_path: str, level: int) -> str:
    """The config file (or folder) that ``from <level dots><relative_import_path>`` names.

    Returns the path of ``<name>.py`` if it exists, else of the folder ``<name>`` (whose
    config files are then imported by name: ``from ..common import optim``).
    """
    cur = os.path.dirname(original_file)
    for _ in range(level - 1):
        cur = os.path.dirname(cur)
    name = relative_import_path.lstrip(".")
    if name:
        cur = os.path.join(cur, *name.split("."))
    if name and os.path.isfile(cur + ".py"):
        return cur + ".py"
    if os.path.isdir(cur):
        return cur
    raise ImportError(
        f"Cannot import {'.' * level}{relative_import_path} from config file "
        f"{original_file}: {cur}.py does not exist"
    )


def _load_config_module(filename: str) -> types.ModuleType:
    _validate_py_syntax(filename)
    spec = importlib.machinery.ModuleSpec(_random_package_name(filename), None, origin=filename)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = filename
    with open(filename, encoding="utf-8") as f:
        content = f.read()
    exec(compile(content, filename, "exec"), module.__dict__)
    return module


@contextmanager
def _patch_import() -> Iterator[None]:
    """Make relative imports inside config files load the named config files.

    Config files are not in a package, so Python's own relative import would fail; only
    imports made from a module loaded here (its ``__package__`` starts with
    ``_CFG_PACKAGE_NAME``) are redirected, everything else goes to the normal import.
    """
    old_import = builtins.__import__

    def new_import(name, globals=None, locals=None, fromlist=(), level=0):
        package = (globals or {}).get("__package__", "") or ""
        if level == 0 or not package.startswith(_CFG_PACKAGE_NAME):
            return old_import(name, globals, locals, fromlist=fromlist, level=level)
        importer = globals["__file__"]
        path = _find_relative_path(importer, name, level)
        if os.path.isdir(path):
            # "from ..common import optim, schedule": each name is a config file of the folder.
            folder = types.ModuleType(f"{package}.<folder>")
            for item in fromlist or ():
                item_path = os.path.join(path, item + ".py")
                if not os.path.isfile(item_path):
                    raise ImportError(
                        f"Cannot import {item!r} from {path} in config file {importer}: "
                        f"{item_path} does not exist"
                    )
                setattr(folder, item, _load_config_module(item_path))
            return folder
        module = _load_config_module(path)
        for item in fromlist or ():
            if item == "*":
                continue
            if item not in module.__dict__:
                raise ImportError(f"Cannot import name {item!r} from config file {path}")
            module.__dict__[item] = _cast_to_config(module.__dict__[item])
        return module

    builtins.__import__ = new_import
    try:
        yield
    finally:
        builtins.__import__ = old_import


class _OverrideLoader(yaml.SafeLoader):
    """YAML for override values, plus floats without a dot (``1e-4``), as Python reads them."""


_OverrideLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."),
)

_MISSING = object()


def _parse_override_value(text: str) -> Any:
    text = text.strip()
    if text == "":
        return ""
    if text.lower() in ("inf", "+inf", "-inf", "nan"):
        return float(text)
    try:
        return yaml.load(text, Loader=_OverrideLoader)
    except yaml.YAMLError:
        return text


class LazyConfig:
    """Load, save, edit and print LazyConfigs (Python or YAML config files)."""

    @staticmethod
    def load_rel(filename: str, keys: None | str | tuple[str, ...] = None) -> Any:
        """Like :meth:`load`, with ``filename`` relative to the file of the caller."""
        frame = inspect.currentframe()
        caller = frame.f_back.f_code.co_filename if frame and frame.f_back else "<string>"
        if caller == "<string>" or not os.path.isfile(caller):
            raise ValueError("load_rel() must be called from a file (the path is relative to it)")
        return LazyConfig.load(os.path.join(os.path.dirname(caller), filename), keys)

    @staticmethod
    def load(filename: str, keys: None | str | tuple[str, ...] = None) -> Any:
        """Load a config file.

        Args:
            filename: a ``.py`` config file (executed; relative imports of other config files
                are allowed) or a ``.yaml``/``.yml`` file (as written by :meth:`save`).
            keys: return only this top-level key (a string) or these keys (a tuple, returned as
                a tuple); by default the whole config.

        Returns:
            A ``DictConfig`` of the file's top-level dict values (names starting with ``_`` and
            non-dict values such as imported modules are left out), or the selected keys.
        """
        filename = os.fspath(filename).replace("/./", "/")
        ext = os.path.splitext(filename)[1]
        if ext not in (".py", ".yaml", ".yml"):
            raise ValueError(f"Config file {filename} must be a .py, .yaml or .yml file")
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"Config file {filename} does not exist")
        if ext == ".py":
            _validate_py_syntax(filename)
            with _patch_import():
                # Execute as a module of the loader package, so its relative imports work.
                namespace = {"__file__": filename, "__package__": _random_package_name(filename)}
                with open(filename, encoding="utf-8") as f:
                    content = f.read()
                exec(compile(content, filename, "exec"), namespace)
            ret: Any = namespace
        else:
            with open(filename, encoding="utf-8") as f:
                # LazyConfig YAML may hold Python objects; config files are trusted code anyway.
                obj = yaml.unsafe_load(f)
            ret = OmegaConf.create(obj if obj is not None else {}, flags={"allow_objects": True})

        if keys is not None:

            def _get(key: str) -> Any:
                if key not in ret:
                    known = [k for k in ret if isinstance(k, str) and not k.startswith("_")]
                    close = difflib.get_close_matches(key, known, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise KeyError(f"Config file {filename} has no top-level key {key!r}.{hint}")
                return _cast_to_config(ret[key])

            if isinstance(keys, str):
                return _get(keys)
            return tuple(_get(k) for k in keys)
        if ext == ".py":
            ret = DictConfig(
                {
                    name: _cast_to_config(value)
                    for name, value in ret.items()
                    if isinstance(value, DictConfig | ListConfig | dict)
                    and not name.startswith("_")
                },
                flags={"allow_objects": True},
            )
        return ret

    @staticmethod
    def save(cfg: Any, filename: str) -> None:
        """Write ``cfg`` to a YAML file that :meth:`load` reads back.

        Classes and functions (``_target_`` s included) are written as their dotted import path.
        Values YAML cannot hold (tensors, arbitrary objects) are replaced by the string
        ``"<unserializable TYPE: repr>"`` and a warning lists their keys; the full config is
        then also pickled to ``filename + ".pkl"`` when it can be.
        """
        filename = os.fspath(filename)
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg, flags={"allow_objects": True})
        container = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
        marked: list[str] = []
        plain = _to_yaml_safe(container, "", marked)
        dumped = yaml.safe_dump(
            plain, default_flow_style=None, allow_unicode=True, width=9999, sort_keys=False
        )
        with open(filename, "w", encoding="utf-8") as f:
            f.write(dumped)
        if marked:
            logger.warning(
                "Config saved to %s with unserializable values replaced by markers at: %s",
                filename,
                ", ".join(marked),
            )
            try:
                with open(filename + ".pkl", "wb") as f:
                    pickle.dump(cfg, f)
                logger.warning("The full config is pickled at %s.pkl", filename)
            except Exception as e:  # an object that cannot be pickled either
                logger.warning("The config could not be pickled either: %s", e)
                if os.path.exists(filename + ".pkl"):
                    os.remove(filename + ".pkl")

    @staticmethod
    def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
        """Edit ``cfg`` in place from command-line style overrides and return it.

        Each override is ``key=value`` with a dotted key (``train.max_iter=100``,
        ``optimizer.lr=1e-3``, ``model.backbone.name='R50'``, ``train.steps=[1, 2]``,
        ``x=null``). Values are read as YAML (quoted strings stay strings, ``1e-3`` is a float).
        ``+key=value`` adds a key that does not exist yet; ``~key`` deletes one. Setting a key
        that does not exist (without ``+``) is a ``KeyError`` naming the closest existing key,
        so that typos do not silently add unused keys.
        """
        for override in overrides:
            LazyConfig._apply_override(cfg, override)
        return cfg

    @staticmethod
    def _apply_override(cfg: DictConfig, override: str) -> None:
        if not isinstance(override, str):
            raise TypeError(f"Overrides must be strings like 'a.b=1', got {override!r}")
        text = override.strip()
        if text.startswith("~"):
            key = text[1:].split("=", 1)[0].strip()
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key, default=_MISSING) if parent_key else cfg
            if not isinstance(parent, DictConfig) or leaf not in parent:
                _raise_unknown_override_key(cfg, key, override)
            del parent[leaf]
            return
        add = text.startswith("+")
        if add:
            text = text[1:]
        if "=" not in text:
            raise ValueError(f"Override {override!r} is not of the form key=value")
        key, value_text = text.split("=", 1)
        key = key.strip()
        if not key or not re.fullmatch(r"[\w\-]+(\.[\w\-]+)*", key):
            raise ValueError(f"Override {override!r} has an invalid key {key!r}")
        value = _parse_override_value(value_text)

        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            v = OmegaConf.select(cfg, prefix, default=_MISSING)
            if v is _MISSING:
                if add:
                    break
                _raise_unknown_override_key(cfg, key, override)
            if not OmegaConf.is_config(v):
                raise KeyError(
                    f"Cannot apply override {override!r}: {prefix} is a "
                    f"{type(v).__name__}, not a config"
                )
        if not add and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            _raise_unknown_override_key(cfg, key, override)
        OmegaConf.update(cfg, key, value, merge=True, force_add=add)

    @staticmethod
    def to_py(cfg: Any, prefix: str = "cfg.") -> str:
        """Python source that describes ``cfg``: one ``prefix<key> = ...`` line per entry.

        Dicts with ``_target_`` print as calls of the target's dotted name
        (``torchdet.modeling.GeneralizedRCNN(backbone=..., ...)``), long calls over several
        indented lines. Meant for reading a config, e.g. in logs.
        """
        if isinstance(cfg, DictConfig | ListConfig):
            cfg = OmegaConf.to_container(cfg, resolve=False)
        lines = _top_level_lines(cfg, prefix)
        return "\n".join(lines) + "\n"


def _raise_unknown_override_key(cfg: DictConfig, key: str, override: str) -> None:
    known = list(_all_keys(cfg))
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(
        f"Override {override!r}: config has no key {key!r}.{hint} "
        "(prefix the override with '+' to add a new key)"
    )


def _all_keys(cfg: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(cfg, DictConfig):
        for k in cfg:
            full = f"{prefix}{k}"
            yield full
            node = cfg._get_node(k)
            if isinstance(node, DictConfig):
                yield from _all_keys(node, full + ".")


def _to_yaml_safe(obj: Any, path: str, marked: list[str]) -> Any:
    if isinstance(obj, Mapping):
        return {
            k: _to_yaml_safe(v, f"{path}.{k}" if path else str(k), marked) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_to_yaml_safe(v, f"{path}[{i}]", marked) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if callable(obj) and hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        try:
            name = _convert_target_to_string(obj)
            from ..utils.registry import locate

            if locate(name) is obj:
                return name
        except Exception:
            pass
    marked.append(path or "<root>")
    text = repr(obj)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"<unserializable {type(obj).__name__}: {text}>"


def _render(obj: Any, indent: int, used: int) -> str:
    """Python source for a value: on one line if it fits in 100 columns, else split.

    ``indent`` is the indentation of the line the value starts on and ``used`` the columns
    already taken on it (indentation and any ``key=`` prefix).
    """
    pad = " " * indent
    if isinstance(obj, Mapping) and "_target_" in obj:
        target = obj["_target_"]
        name = target if isinstance(target, str) else _convert_target_to_string(target)
        items = [(f"{k}=", v) for k, v in obj.items() if k != "_target_"]
        opening, closing = f"{name}(", ")"
    elif isinstance(obj, Mapping):
        items = [(f"{k!r}: ", v) for k, v in obj.items()]
        opening, closing = "{", "}"
    elif isinstance(obj, list | tuple):
        items = [("", v) for v in obj]
        opening, closing = "[", "]"
    elif callable(obj) and hasattr(obj, "__qualname__"):
        return _convert_target_to_string(obj)
    else:
        return repr(obj)
    one_line = opening + ", ".join(f"{k}{_render(v, 0, 0)}" for k, v in items) + closing
    if used + len(one_line) + 1 <= 100 and "\n" not in one_line:  # +1: a trailing comma
        return one_line
    inner = "".join(
        f"{pad}    {k}{_render(v, indent + 4, indent + 4 + len(k))},\n" for k, v in items
    )
    return f"{opening}\n{inner}{pad}{closing}"


def _top_level_lines(cfg: Any, prefix: str) -> list[str]:
    if not isinstance(cfg, Mapping) or "_target_" in cfg:
        head = f"{prefix.rstrip('.')} = "
        return [head + _render(cfg, 0, len(head))]
    lines = []
    for k, v in cfg.items():
        if isinstance(v, Mapping) and "_target_" not in v and v:
            lines += _top_level_lines(v, f"{prefix}{k}.")
        else:
            head = f"{prefix}{k} = "
            lines.append(head + _render(v, 0, len(head)))
    return lines

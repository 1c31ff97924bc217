"""``CfgNode``: the yacs-style hierarchical config of Detectron2, written for torchdet.

A ``CfgNode`` is a ``dict`` whose keys can also be read and written as attributes
(``cfg.MODEL.RPN.HEAD_NAME``). It follows the semantics of yacs and fvcore's extension of it,
so Detectron2's YAML files and code that manipulates configs work unchanged:

* ``merge_from_file`` reads YAML with ``_BASE_`` inheritance (paths relative to the including
  file, resolved recursively), ``merge_from_other_cfg`` and ``merge_from_list(["A.B", "1"])``
  merge into an existing tree; every merged key must already exist (unless the node was created
  with ``new_allowed=True``) and keep its type, with the yacs exceptions (list <-> tuple, and
  ``None`` on either side accepts anything). String values go through ``ast.literal_eval`` as in
  yacs, so ``"1e-4"`` becomes a float and ``"(1, 2)"`` a tuple.
* ``freeze``/``defrost`` make a whole tree read-only or writable again; ``clone`` deep-copies.
* ``dump`` writes YAML that loads back to an equal config.
* ``register_deprecated_key`` / ``register_renamed_key`` let old configs load (deprecated keys
  are skipped with a warning) or fail with a message saying what the key became.
* Configs with an older ``VERSION`` are upgraded through :mod:`torchdet.config.compat`.

We write it ourselves instead of depending on yacs/fvcore because we want errors a user can act
on: an unknown key raises :class:`ConfigKeyError` (a ``KeyError``) naming the full dotted key,
the file it came from and the closest existing key (``MODEL.ROI_HEADS.NUM_CLASS`` -> "did you mean
``MODEL.ROI_HEADS.NUM_CLASSES``?"), and a type mismatch raises :class:`ConfigTypeError` (both a
``TypeError`` and, for yacs compatibility, a ``ValueError``) naming the key, the expected and the
given type and the file. yacs reports these with bare assertions or without the file.
"""

from __future__ import annotations

import ast
import copy
import difflib
import io
import logging
import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

import yaml

__all__ = [
    "BASE_KEY",
    "CfgNode",
    "ConfigKeyError",
    "ConfigTypeError",
    "load_cfg",
]

logger = logging.getLogger(__name__)

#: The key through which a YAML file names the file it inherits from.
BASE_KEY = "_BASE_"

# Leaf types a config may hold; anything else could not be dumped to YAML and read back.
_VALID_TYPES = (tuple, list, str, int, float, bool, type(None))

# Internal state lives in the instance ``__dict__``, never among the dict items (the config keys).
_IMMUTABLE = "__immutable__"
_DEPRECATED_KEYS = "__deprecated_keys__"
_RENAMED_KEYS = "__renamed_keys__"
_NEW_ALLOWED = "__new_allowed__"


class ConfigKeyError(KeyError):
    """A config key that does not exist (or was renamed). ``str()`` gives the plain message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigTypeError(TypeError, ValueError):
    """A value whose type does not match the config's. A ``ValueError`` too, as in yacs."""


def _in_file(source: str | None) -> str:
    return f" (in config file {source!r})" if source else ""


def _is_valid_leaf(value: Any) -> bool:
    return type(value) in _VALID_TYPES


class CfgNode(dict):
    """A config node: a dict with attribute access, freezing, typed merging and YAML I/O.

    Args:
        init_dict: initial content; nested dicts become ``CfgNode`` s.
        key_list: the dotted path of this node inside its root (used in error messages).
        new_allowed: whether merging may add keys that this node (and the nodes created below
            it) does not have yet.
    """

    def __init__(
        self,
        init_dict: Mapping | None = None,
        key_list: list[str] | None = None,
        new_allowed: bool = False,
    ) -> None:
        init_dict = {} if init_dict is None else init_dict
        key_list = [] if key_list is None else key_list
        converted = {}
        for k, v in init_dict.items():
            if isinstance(v, Mapping) and not isinstance(v, CfgNode):
                v = type(self)(v, key_list=key_list + [k], new_allowed=new_allowed)
            elif not isinstance(v, CfgNode) and not _is_valid_leaf(v):
                raise ConfigTypeError(
                    f"Config key {'.'.join(key_list + [str(k)])} holds a {type(v).__name__} "
                    f"({v!r}); valid types are {[t.__name__ for t in _VALID_TYPES]} and CfgNode"
                )
            converted[k] = v
        super().__init__(converted)
        self.__dict__[_IMMUTABLE] = False
        self.__dict__[_DEPRECATED_KEYS] = set()
        self.__dict__[_RENAMED_KEYS] = {}
        self.__dict__[_NEW_ALLOWED] = new_allowed

    # ------------------------------------------------------------------ attribute access
    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # keep copy/pickle/introspection protocols working
        close = difflib.get_close_matches(name, [str(k) for k in self.keys()], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise AttributeError(f"Config has no key {name!r}.{hint}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:
            raise AttributeError(f"Invalid attempt to modify internal CfgNode state: {name}")
        if name.startswith("COMPUTED_") and name in self:
            # fvcore semantics: a computed value may be set again only to the same value.
            if self[name] == value:
                return
            raise ConfigKeyError(
                f"Computed attribute {name!r} already exists with a different value! "
                f"old={self[name]!r}, new={value!r}."
            )
        self[name] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check_mutable(key, value)
        if isinstance(value, Mapping) and not isinstance(value, CfgNode):
            value = type(self)(value, new_allowed=self.is_new_allowed())
        elif not isinstance(value, CfgNode) and not _is_valid_leaf(value):
            raise ConfigTypeError(
                f"Cannot set config key {key!r} to a {type(value).__name__} ({value!r}); "
                f"valid types are {[t.__name__ for t in _VALID_TYPES]} and CfgNode"
            )
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._check_mutable(key)
        super().__delitem__(key)

    def __delattr__(self, name: str) -> None:
        if name not in self:
            raise AttributeError(name)
        del self[name]

    def _check_mutable(self, key: Any, value: Any = "<deleted>") -> None:
        if self.__dict__.get(_IMMUTABLE, False):
            raise AttributeError(
                f"Attempted to set {key!r} to {value!r}, but the CfgNode is frozen; "
                "call cfg.defrost() first"
            )

    # The dict mutators that bypass __setitem__ must respect freezing too.
    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: Any, *default: Any) -> Any:  # type: ignore[override]
        self._check_mutable(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[Any, Any]:
        self._check_mutable("<item>")
        return super().popitem()

    def clear(self) -> None:
        self._check_mutable("<all keys>")
        super().clear()

    # deepcopy / pickle: rebuild items and internal state without going through __setitem__,
    # so that frozen nodes can be copied (and stay frozen).
    def __reduce__(self) -> tuple:
        return (_rebuild_cfg_node, (type(self), dict(self), dict(self.__dict__)))

    def __str__(self) -> str:
        lines = []
        for k, v in sorted(self.items(), key=lambda kv: str(kv[0])):
            if isinstance(v, CfgNode):
                body = "\n".join("  " + line for line in str(v).split("\n"))
                lines.append(f"{k}:\n{body}")
            else:
                lines.append(f"{k}: {v}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"

    # ------------------------------------------------------------------ freezing
    def freeze(self) -> None:
        """Make this config and all its children immutable."""
        self._immutable(True)

    def defrost(self) -> None:
        """Make this config and all its children mutable again."""
        self._immutable(False)

    def is_frozen(self) -> bool:
        return self.__dict__[_IMMUTABLE]

    def _immutable(self, is_immutable: bool) -> None:
        self.__dict__[_IMMUTABLE] = is_immutable
        for v in self.values():
            if isinstance(v, CfgNode):
                v._immutable(is_immutable)

    def clone(self) -> CfgNode:
        """A deep copy (frozen if this one is)."""
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ new keys
    def is_new_allowed(self) -> bool:
        return self.__dict__[_NEW_ALLOWED]

    def set_new_allowed(self, is_new_allowed: bool) -> None:
        """Allow or forbid merging keys this node lacks, here and in every child node."""
        self.__dict__[_NEW_ALLOWED] = is_new_allowed
        for v in self.values():
            if isinstance(v, CfgNode):
                v.set_new_allowed(is_new_allowed)

    # ------------------------------------------------------------------ deprecated / renamed
    def register_deprecated_key(self, key: str) -> None:
        """Ignore ``key`` (a full dotted key) with a warning when a merged config sets it."""
        deprecated = self.__dict__[_DEPRECATED_KEYS]
        if key in deprecated:
            raise ConfigKeyError(f"Key {key} is already registered as deprecated")
        deprecated.add(key)

    def register_renamed_key(self, old_name: str, new_name: str, message: str | None = None):
        """Make merging ``old_name`` fail with an error naming ``new_name`` (and ``message``)."""
        renamed = self.__dict__[_RENAMED_KEYS]
        if old_name in renamed:
            raise ConfigKeyError(f"Key {old_name} is already registered as renamed")
        renamed[old_name] = new_name if message is None else (new_name, message)

    def key_is_deprecated(self, full_key: str) -> bool:
        if full_key in self.__dict__[_DEPRECATED_KEYS]:
            logger.warning("Deprecated config key (will be ignored): %s", full_key)
            return True
        return False

    def key_is_renamed(self, full_key: str) -> bool:
        return full_key in self.__dict__[_RENAMED_KEYS]

    def raise_key_rename_error(self, full_key: str, source: str | None = None) -> None:
        new_info = self.__dict__[_RENAMED_KEYS][full_key]
        note = ""
        if isinstance(new_info, tuple):
            new_info, message = new_info
            note = f" Note: {message}"
        raise ConfigKeyError(
            f"Key {full_key} was renamed to {new_info}; please update your config"
            f"{_in_file(source)}.{note}"
        )

    # ------------------------------------------------------------------ YAML I/O
    def dump(self, **kwargs: Any) -> str:
        """The config as a YAML string; ``kwargs`` go to ``yaml.safe_dump``."""
        return yaml.safe_dump(_to_plain_dict(self, []), **kwargs)

    @classmethod
    def load_cfg(cls, cfg_file_obj_or_str: str | IO[str]) -> CfgNode:
        """Load a config from a YAML string or an open YAML file (``_BASE_`` is not resolved)."""
        if isinstance(cfg_file_obj_or_str, str):
            loaded = yaml.safe_load(cfg_file_obj_or_str)
        elif isinstance(cfg_file_obj_or_str, io.IOBase) or hasattr(cfg_file_obj_or_str, "read"):
            loaded = yaml.safe_load(cfg_file_obj_or_str.read())
        else:
            raise TypeError(
                "load_cfg expects a YAML string or an open file, "
                f"got {type(cfg_file_obj_or_str).__name__}"
            )
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise TypeError(f"A config must be a YAML mapping, got {type(loaded).__name__}")
        return cls(loaded)

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict:
        """Read a YAML file as a plain dict, resolving its ``_BASE_`` chain.

        The base path is relative to ``filename``'s folder unless absolute (``~`` is expanded).
        Keys of the including file override those of its base; nested mappings merge key by key.

        Args:
            filename: path of the YAML file.
            allow_unsafe: if the file needs tags that ``yaml.safe_load`` refuses (Python objects),
                load it with ``yaml.unsafe_load`` instead of failing. Only for trusted files.
        """
        return _load_yaml_with_base(os.fspath(filename), allow_unsafe, chain=())

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (with its ``_BASE_`` chain) into this config.

        A file with an older ``VERSION`` (or none, guessed by
        :func:`~torchdet.config.compat.guess_version`) is merged into a downgraded copy of this
        config and the result upgraded back, with a warning.
        """
        cfg_filename = os.fspath(cfg_filename)
        if not os.path.isfile(cfg_filename):
            raise FileNotFoundError(f"Config file {cfg_filename!r} does not exist")
        self._check_not_frozen("merge_from_file")
        loaded = type(self)(self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe))
        self._merge_versioned(loaded, source=cfg_filename)

    def _merge_versioned(self, loaded: CfgNode, source: str | None) -> None:
        if "VERSION" not in self:
            # A config without versioning (e.g. a project's own tree): plain merge.
            _merge_a_into_b(loaded, self, self, [], source)
            return
        from . import compat

        latest = compat.latest_version()
        version = self.VERSION
        if version != latest:
            raise ValueError(
                f"Can only merge config files into a config of the latest version v{latest}; "
                f"this config is v{version}. Upgrade it with upgrade_config() first."
            )
        loaded_ver = loaded.get("VERSION", None)
        if loaded_ver is None:
            loaded_ver = compat.guess_version(loaded, source or "<config>")
        if not isinstance(loaded_ver, int) or loaded_ver > latest:
            raise ValueError(
                f"Config{_in_file(source)} has VERSION {loaded_ver!r}; torchdet reads versions "
                f"1 to {latest}"
            )
        if loaded_ver == latest:
            _merge_a_into_b(loaded, self, self, [], source)
            return
        logger.warning(
            "Loading an old v%d config file %r by automatically upgrading to v%d. "
            "Update the file to silence this warning.",
            loaded_ver,
            source,
            latest,
        )
        old_self = compat.downgrade_config(self, to_version=loaded_ver)
        _merge_a_into_b(loaded, old_self, old_self, [], source)
        new_config = compat.upgrade_config(old_self)
        dict.clear(self)
        for k, v in new_config.items():
            dict.__setitem__(self, k, v)

    def merge_from_other_cfg(self, cfg_other: Mapping) -> None:
        """Merge another config (or plain nested dict) into this one."""
        self._check_not_frozen("merge_from_other_cfg")
        other = cfg_other if isinstance(cfg_other, CfgNode) else type(self)(cfg_other)
        _merge_a_into_b(other, self, self, [], None)

    def merge_from_list(self, cfg_list: list[str] | tuple[str, ...]) -> None:
        """Merge ``[full_key, value, full_key, value, ...]``, e.g. from the command line.

        Values that are strings are parsed with ``ast.literal_eval`` when possible (``"0.5"``,
        ``"[1, 2]"``, ``"True"``), else kept as strings. Each key must exist and each value must
        have its key's type (list and tuple are interchangeable).
        """
        self._check_not_frozen("merge_from_list")
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Override list has odd length {len(cfg_list)}: {list(cfg_list)}; "
                "it must be a list of KEY VALUE pairs"
            )
        for full_key, v in zip(cfg_list[0::2], cfg_list[1::2]):
            if not isinstance(full_key, str):
                raise TypeError(f"Override keys must be strings, got {full_key!r}")
            if self.key_is_deprecated(full_key):
                continue
            if self.key_is_renamed(full_key):
                self.raise_key_rename_error(full_key)
            key_list = full_key.split(".")
            d = self
            for i, subkey in enumerate(key_list[:-1]):
                if not isinstance(d, CfgNode) or subkey not in d:
                    _raise_unknown_key(self, ".".join(key_list[: i + 1]), None)
                d = d[subkey]
            subkey = key_list[-1]
            if not isinstance(d, CfgNode) or subkey not in d:
                _raise_unknown_key(self, full_key, None)
            value = _decode_cfg_value(v, type(self))
            value = _check_and_coerce_cfg_value_type(value, d[subkey], full_key, None)
            if isinstance(value, CfgNode) and isinstance(d[subkey], CfgNode):
                _merge_a_into_b(value, d[subkey], self, key_list, None)
            else:
                d[subkey] = value

    def _check_not_frozen(self, what: str) -> None:
        if self.is_frozen():
            raise AttributeError(f"Cannot {what}: the CfgNode is frozen; call cfg.defrost() first")


def _rebuild_cfg_node(cls: type, items: dict, state: dict) -> CfgNode:
    node = cls.__new__(cls)
    dict.update(node, items)
    node.__dict__.update(state)
    return node


def _to_plain_dict(node: Any, key_list: list[str]) -> Any:
    if not isinstance(node, CfgNode):
        if not _is_valid_leaf(node):
            raise ConfigTypeError(
                f"Cannot dump config key {'.'.join(key_list)}: a {type(node).__name__} "
                f"({node!r}) is not one of {[t.__name__ for t in _VALID_TYPES]}"
            )
        return node
    return {k: _to_plain_dict(v, key_list + [str(k)]) for k, v in node.items()}


def load_cfg(cfg_file_obj_or_str: str | IO[str]) -> CfgNode:
    """Load a :class:`CfgNode` from a YAML string or an open YAML file."""
    return CfgNode.load_cfg(cfg_file_obj_or_str)


def _load_yaml_with_base(filename: str, allow_unsafe: bool, chain: tuple[str, ...]) -> dict:
    real = os.path.realpath(filename)
    if real in chain:
        cycle = " -> ".join(list(chain) + [real])
        raise ValueError(f"Config _BASE_ inheritance forms a cycle: {cycle}")
    if not os.path.isfile(filename):
        including = f" (the _BASE_ of {chain[-1]!r})" if chain else ""
        raise FileNotFoundError(f"Config file {filename!r}{including} does not exist")
    with open(filename, encoding="utf-8") as f:
        text = f.read()
    try:
        cfg = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        if not allow_unsafe:
            raise ValueError(
                f"Config file {filename!r} holds YAML tags that safe loading refuses ({e}); "
                "pass allow_unsafe=True if you trust the file"
            ) from e
        logger.warning("Loading config %s with yaml.unsafe_load; the file is trusted", filename)
        cfg = yaml.unsafe_load(text)
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise TypeError(f"Config file {filename!r} must hold a YAML mapping, got {type(cfg)}")

    if BASE_KEY not in cfg:
        return cfg
    base_file = cfg.pop(BASE_KEY)
    if not isinstance(base_file, str):
        raise TypeError(f"{BASE_KEY} in {filename!r} must be a path string, got {base_file!r}")
    if base_file.startswith(("http://", "https://")):
        raise ValueError(f"{BASE_KEY} in {filename!r} is a URL ({base_file}); use a local path")
    base_file = os.path.expanduser(base_file)
    if not os.path.isabs(base_file):
        base_file = os.path.join(os.path.dirname(filename), base_file)
    base_cfg = _load_yaml_with_base(base_file, allow_unsafe, chain + (real,))
    _merge_dicts(cfg, base_cfg, filename)
    return base_cfg


def _merge_dicts(a: dict, b: dict, filename: str, prefix: str = "") -> None:
    """Merge the including file ``a`` into its base ``b`` in place (plain dicts, no checks)."""
    for k, v in a.items():
        if isinstance(v, dict) and k in b:
            if not isinstance(b[k], dict):
                raise TypeError(
                    f"Cannot inherit key {prefix}{k} from base: {filename!r} makes it a mapping "
                    f"but the base holds {b[k]!r}"
                )
            _merge_dicts(v, b[k], filename, f"{prefix}{k}.")
        else:
            b[k] = v


def _decode_cfg_value(value: Any, node_type: type = CfgNode) -> Any:
    """yacs decoding: dicts become nodes, strings are parsed as Python literals when possible."""
    if isinstance(value, Mapping) and not isinstance(value, CfgNode):
        return node_type(value)
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def _check_and_coerce_cfg_value_type(
    replacement: Any, original: Any, full_key: str, source: str | None
) -> Any:
    """yacs type rule: same type, or ``None`` on either side, or list <-> tuple."""
    original_type, replacement_type = type(original), type(replacement)
    if replacement_type is original_type:
        return replacement
    if isinstance(original, CfgNode) and isinstance(replacement, CfgNode):
        return replacement
    if replacement is None or original is None:
        return replacement
    if isinstance(original, tuple) and isinstance(replacement, list):
        return tuple(replacement)
    if isinstance(original, list) and isinstance(replacement, tuple):
        return list(replacement)
    expected = (
        "a mapping (config node)" if isinstance(original, CfgNode) else original_type.__name__
    )
    given = "a mapping" if isinstance(replacement, CfgNode) else replacement_type.__name__
    raise ConfigTypeError(
        f"Type mismatch for config key {full_key}: expected {expected} (default {original!r}), "
        f"given {given} ({replacement!r}){_in_file(source)}"
    )


def _all_full_keys(node: CfgNode, prefix: str = "") -> Iterable[str]:
    for k, v in node.items():
        full = f"{prefix}{k}"
        yield full
        if isinstance(v, CfgNode):
            yield from _all_full_keys(v, full + ".")


def _raise_unknown_key(root: CfgNode, full_key: str, source: str | None) -> None:
    candidates = list(_all_full_keys(root))
    close = difflib.get_close_matches(full_key, candidates, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigKeyError(f"Non-existent config key: {full_key}{_in_file(source)}.{hint}")


def _merge_a_into_b(
    a: CfgNode, b: CfgNode, root: CfgNode, key_list: list[str], source: str | None
) -> None:
    """Merge ``a`` into ``b`` recursively, checking keys against ``b`` and types as yacs does."""
    for k, v_ in a.items():
        full_key = ".".join(key_list + [str(k)])
        v = _decode_cfg_value(copy.deepcopy(v_), type(b))
        if k in b:
            v = _check_and_coerce_cfg_value_type(v, b[k], full_key, source)
            if isinstance(v, CfgNode) and isinstance(b[k], CfgNode):
                _merge_a_into_b(v, b[k], root, key_list + [str(k)], source)
            else:
                b[k] = v
        elif b.is_new_allowed():
            b[k] = v
        elif root.key_is_deprecated(full_key):
            continue
        elif root.key_is_renamed(full_key):
            root.raise_key_rename_error(full_key, source)
        else:
            _raise_unknown_key(root, full_key, source)

"""``instantiate``: build objects from LazyConfig dicts that name a ``_target_``.

A config ``{"_target_": T, **kwargs}`` stands for the call ``T(**kwargs)``; ``T`` is a class, a
function or its dotted import path (``"torchdet.modeling.GeneralizedRCNN"``). Arguments are
instantiated first, depth first, so whole object graphs are described by nested dicts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from ..utils.registry import locate

__all__ = ["dump_dataclass", "instantiate"]

logger = logging.getLogger(__name__)


def _convert_target_to_string(t: Any) -> str:
    """The dotted import path of a class or function, as short as still resolves to it.

    ``torchdet.modeling.meta_arch.rcnn.GeneralizedRCNN`` becomes ``torchdet.modeling.
    GeneralizedRCNN`` when the package re-exports it, so saved configs survive moving the
    implementation between private modules.
    """
    module, qualname = t.__module__, t.__qualname__
    parts = module.split(".")
    for k in range(1, len(parts)):
        candidate = ".".join(parts[:k]) + "." + qualname
        try:
            if locate(candidate) is t:
                return candidate
        except Exception:  # a parent package failing to import just means "no shorter path"
            continue
    return f"{module}.{qualname}"


def dump_dataclass(obj: Any) -> dict:
    """A dataclass instance as a LazyConfig dict (``_target_`` = its class), recursively.

    Args:
        obj: an instance (not a class) of a dataclass.

    Returns:
        ``{"_target_": "module.Class", field: value, ...}``; nested dataclasses, also inside
        lists and tuples, are dumped the same way, so ``instantiate`` rebuilds an equal object.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"dump_dataclass() needs a dataclass instance, got {obj!r}")
    ret: dict[str, Any] = {"_target_": _convert_target_to_string(type(obj))}
    for field in dataclasses.fields(obj):
        v = getattr(obj, field.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = dump_dataclass(v)
        elif isinstance(v, list | tuple):
            v = [
                dump_dataclass(x) if dataclasses.is_dataclass(x) and not isinstance(x, type) else x
                for x in v
            ]
        ret[field.name] = v
    return ret


def _resolve_target(target: Any, path: str) -> tuple[Any, str]:
    if isinstance(target, str):
        try:
            obj = locate(target)
        except Exception as e:
            raise ImportError(f"Cannot locate _target_ {target!r} (at {path}): {e}") from e
        name = target
    else:
        obj = target
        name = getattr(obj, "__module__", "?") + "." + getattr(obj, "__qualname__", repr(obj))
    if not callable(obj):
        raise TypeError(f"_target_ {name!r} (at {path}) is not callable: {obj!r}")
    return obj, name


def _contains_target(cfg: Any) -> bool:
    if isinstance(cfg, Mapping):
        return "_target_" in cfg or any(_contains_target(v) for v in cfg.values())
    if isinstance(cfg, list | tuple) or _is_list_config(cfg):
        return any(_contains_target(v) for v in cfg)
    return False


def _is_list_config(cfg: Any) -> bool:
    from omegaconf import ListConfig

    return isinstance(cfg, ListConfig)


def _instantiate(cfg: Any, path: str) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, ListConfig):
        return ListConfig(
            [_instantiate(x, f"{path}[{i}]") for i, x in enumerate(cfg)],
            flags={"allow_objects": True},
        )
    if isinstance(cfg, list):
        # Many constructors take lists of objects (ResNet stages, DatasetMapper augmentations).
        return [_instantiate(x, f"{path}[{i}]") for i, x in enumerate(cfg)]
    if isinstance(cfg, tuple):
        return tuple(_instantiate(x, f"{path}[{i}]") for i, x in enumerate(cfg))

    # A DictConfig backed by a dataclass (omegaconf "structured config") becomes that dataclass.
    if isinstance(cfg, DictConfig) and dataclasses.is_dataclass(cfg._metadata.object_type):
        return OmegaConf.to_object(cfg)

    if isinstance(cfg, Mapping) and "_target_" in cfg:
        # Equivalent to hydra's instantiate(cfg, _convert_="all"): arguments first.
        kwargs = {k: _instantiate(v, f"{path}.{k}") for k, v in cfg.items() if k != "_target_"}
        target, name = _resolve_target(_instantiate(cfg["_target_"], path), path)
        try:
            return target(**kwargs)
        except TypeError as e:
            raise TypeError(f"Error instantiating {name} (at {path}): {e}") from e

    if isinstance(cfg, Mapping) and _contains_target(cfg):
        out = {k: _instantiate(v, f"{path}.{k}") for k, v in cfg.items()}
        if isinstance(cfg, DictConfig):
            return DictConfig(out, flags={"allow_objects": True})
        return out
    return cfg  # plain values (and dicts with nothing to build) are returned as they are


def instantiate(cfg: Any) -> Any:
    """Recursively build the objects described by ``cfg``.

    Args:
        cfg: a mapping with ``_target_`` (built by calling the target with the other keys as
            keyword arguments, themselves instantiated first), a list/tuple/``ListConfig`` (each
            element instantiated), a mapping without ``_target_`` (its values instantiated), an
            omegaconf structured config (converted to its dataclass), or anything else
            (returned unchanged). omegaconf interpolations (``${..x}``) are resolved on access.

    Returns:
        The built object.

    Raises:
        ImportError: a dotted ``_target_`` does not resolve; the message gives its key path.
        TypeError: a target is not callable or rejected its arguments (key path in the message).
    """
    return _instantiate(cfg, "<root>")

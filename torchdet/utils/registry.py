"""A name -> object registry for the extension points (backbones, heads, meta-architectures...)."""

from __future__ import annotations

import difflib
import pydoc
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Registry", "locate"]


class Registry:
    """Maps names to classes or functions, so that a config can select them by string.

    Usage::

        BACKBONE_REGISTRY = Registry("BACKBONE")

        @BACKBONE_REGISTRY.register()
        class MyBackbone(Backbone): ...

        BACKBONE_REGISTRY.get("MyBackbone")
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map and self._obj_map[name] is not obj:
            raise KeyError(f"An object named {name!r} was already registered in {self._name!r}")
        self._obj_map[name] = obj

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Register ``obj`` under ``name`` (default ``obj.__name__``); usable as a decorator."""
        if obj is None:

            def deco(func_or_class: Callable) -> Callable:
                self._do_register(name or func_or_class.__name__, func_or_class)
                return func_or_class

            return deco
        self._do_register(name or obj.__name__, obj)
        return obj

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; the error lists what is registered."""
        try:
            return self._obj_map[name]
        except KeyError:
            known = sorted(self._obj_map)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(
                f"No object named {name!r} found in the {self._name!r} registry.{hint} "
                f"Registered: {known}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._obj_map.items())

    def __len__(self) -> int:
        return len(self._obj_map)

    def keys(self) -> list[str]:
        return list(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry({self._name!r}, {sorted(self._obj_map)})"


def locate(name: str) -> Any:
    """Import an object from its fully qualified name, e.g. ``"torchdet.layers.nms"``."""
    obj = pydoc.locate(name)
    if obj is None:
        raise ImportError(f"Cannot locate {name!r}: no such module attribute or class")
    return obj

"""``configurable``: constructors that take plain arguments and can also build from a config."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["configurable"]


def _called_with_cfg(*args: Any, **kwargs: Any) -> bool:
    """True if the first positional argument, or ``cfg=``, is a config object."""
    from omegaconf import DictConfig

    from .cfg_node import CfgNode

    if args and isinstance(args[0], CfgNode | DictConfig):
        return True
    return isinstance(kwargs.pop("cfg", None), CfgNode | DictConfig)


def _get_args_from_config(from_config_func: Callable, *args: Any, **kwargs: Any) -> dict:
    """Call ``from_config(cfg, ...)``; explicit keyword arguments it does not take are merged in."""
    signature = inspect.signature(from_config_func)
    if next(iter(signature.parameters)) != "cfg":
        name = getattr(from_config_func, "__qualname__", repr(from_config_func))
        raise TypeError(f"{name}.from_config must take 'cfg' as its first argument")
    takes_var_kwargs = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    if takes_var_kwargs:
        return from_config_func(*args, **kwargs)
    supported = set(signature.parameters)
    extra = {name: kwargs.pop(name) for name in list(kwargs) if name not in supported}
    ret = from_config_func(*args, **kwargs)
    ret.update(extra)  # explicit arguments the config function does not know override it
    return ret


def configurable(init_func: Callable | None = None, *, from_config: Callable | None = None):
    """Let a class ``__init__`` or a function accept either plain arguments or a config.

    On a class, decorate ``__init__`` and define ``from_config(cls, cfg, ...)`` returning a
    dict of constructor arguments::

        class A:
            @configurable
            def __init__(self, a, b=2): ...

            @classmethod
            def from_config(cls, cfg):
                return {"a": cfg.A, "b": cfg.B}

        A(a=1)  # plain arguments
        A(cfg)  # from a config; A(cfg, b=3) overrides one argument

    On a function, pass ``from_config``::

        @configurable(from_config=lambda cfg: {"x": cfg.X})
        def build(x, y=1): ...
    """
    if init_func is not None:
        if not (inspect.isfunction(init_func) and init_func.__name__ == "__init__"):
            raise TypeError("@configurable without arguments only decorates a class __init__")

        @functools.wraps(init_func)
        def wrapped_init(self, *args, **kwargs):
            from_config_func = getattr(type(self), "from_config", None)
            if from_config_func is None:
                raise AttributeError(
                    f"{type(self).__name__} uses @configurable but has no from_config classmethod"
                )
            if _called_with_cfg(*args, **kwargs):
                explicit = _get_args_from_config(from_config_func, *args, **kwargs)
                init_func(self, **explicit)
            else:
                init_func(self, *args, **kwargs)

        return wrapped_init

    if from_config is None:
        return configurable  # @configurable() with no arguments
    if not inspect.isfunction(from_config):
        raise TypeError("from_config passed to @configurable must be a function")

    def wrapper(orig_func: Callable) -> Callable:
        @functools.wraps(orig_func)
        def wrapped(*args, **kwargs):
            if _called_with_cfg(*args, **kwargs):
                explicit = _get_args_from_config(from_config, *args, **kwargs)
                return orig_func(**explicit)
            return orig_func(*args, **kwargs)

        wrapped.from_config = from_config
        return wrapped

    return wrapper

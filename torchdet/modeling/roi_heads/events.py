"""Training statistics of the RoI heads, logged to the current event storage if there is one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["put_scalars", "name_scope"]


def _storage():
    try:
        from torchdet.utils.events import get_event_storage
    except ImportError:  # no training utilities: nothing to log to
        return None
    try:
        return get_event_storage()
    except (AssertionError, RuntimeError):
        return None  # outside an EventStorage context (e.g. a bare training step)


def put_scalars(**scalars: float) -> None:
    """Log scalars to the current ``EventStorage``; a no-op outside of one."""
    storage = _storage()
    if storage is not None:
        storage.put_scalars(**scalars)


@contextlib.contextmanager
def name_scope(name: str) -> Iterator[None]:
    """``EventStorage.name_scope`` of the current storage; a no-op outside of one."""
    storage = _storage()
    if storage is None or not hasattr(storage, "name_scope"):
        yield
        return
    with storage.name_scope(name):
        yield

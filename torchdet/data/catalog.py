"""Global registries of datasets and of their metadata.

``DatasetCatalog`` maps a dataset name to a function returning the dataset (a ``list[dict]`` in
the standard format, see ``docs/tutorials/datasets.md`` of Detectron2); the function is only
called by ``DatasetCatalog.get``, so registering a dataset never touches the disk.
``MetadataCatalog`` maps the same names to a :class:`Metadata` object that is created on first
access and shared afterwards.
"""

from __future__ import annotations

import copy
import importlib
import logging
import types
from collections import UserDict
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]

logger = logging.getLogger(__name__)

_builtin_registered = False


def _register_builtin_once() -> None:
    """Import ``torchdet.data.datasets`` (which registers the builtin datasets) on first use.

    Detectron2 registers them when ``detectron2.data`` is imported; ``torchdet.data`` resolves
    its names lazily, so the catalogs do it the first time they are queried instead. Registering
    is cheap and never touches the disk.
    """
    global _builtin_registered
    if not _builtin_registered:
        _builtin_registered = True  # set first: registering calls back into the catalogs
        importlib.import_module("torchdet.data.datasets")


class _DatasetCatalog(UserDict):
    """A global dictionary that stores information about the datasets and how to obtain them.

    It contains a mapping from strings (names that identify a dataset, e.g. "coco_2014_train") to
    functions which parse the dataset and return the samples in the format of ``list[dict]``.
    The returned dicts should be in Detectron2 Dataset format. The purpose of having this catalog
    is to make it easy to choose different datasets, by just using the strings in the config.
    """

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Register a dataset loader under ``name``.

        Args:
            name: the name that identifies a dataset, e.g. "coco_2014_train".
            func: a callable which takes no arguments and returns a list of dicts. It must return
                the same results if called multiple times.

        Raises:
            TypeError: ``name`` is not a string or ``func`` is not callable.
            ValueError: a dataset of that name is already registered.
        """
        _register_builtin_once()  # so that a builtin name is reported as taken, as in Detectron2
        if not isinstance(name, str) or not name:
            raise TypeError(f"DatasetCatalog.register: name must be a non-empty str, got {name!r}")
        if not callable(func):
            raise TypeError(
                f"DatasetCatalog.register('{name}', ...): func must be callable (a function "
                f"returning list[dict]), got {type(func).__name__}"
            )
        if name in self:
            raise ValueError(
                f"Dataset '{name}' is already registered! Remove it first with "
                f"DatasetCatalog.remove('{name}') or choose another name."
            )
        self[name] = func

    def get(self, name: str) -> list[dict]:
        """Call the registered function and return its results.

        Args:
            name: the name that identifies a dataset, e.g. "coco_2014_train".

        Returns:
            The dataset annotations (usually ``list[dict]``).

        Raises:
            KeyError: the name is not registered; the message lists the registered names.
        """
        _register_builtin_once()
        try:
            f = self.data[name]
        except KeyError as e:
            raise KeyError(
                f"Dataset '{name}' is not registered! Available datasets are: "
                f"{', '.join(self.data.keys())}"
            ) from e
        return f()

    def list(self) -> list[str]:
        """List all registered datasets (the builtin ones included)."""
        _register_builtin_once()
        return list(self.data.keys())

    def remove(self, name: str) -> None:
        """Remove the dataset registered under ``name``; raises ``KeyError`` when absent."""
        _register_builtin_once()
        try:
            self.data.pop(name)
        except KeyError as e:
            raise KeyError(f"Dataset '{name}' is not registered, cannot remove it") from e

    def __str__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.data.keys())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()


def _values_equal(a: Any, b: Any) -> bool:
    """Equality that also works for numpy arrays and tensors inside metadata values."""
    if a is b:
        return True
    try:
        eq = a == b
        if isinstance(eq, bool):
            return eq
        return bool(np.all(np.asarray(eq))) and np.shape(a) == np.shape(b)
    except Exception:  # noqa: BLE001 - incomparable values are simply different
        return False


class Metadata(types.SimpleNamespace):
    """A class that supports simple attribute setter/getter.

    It is intended for storing metadata of a dataset and making it accessible globally. Once an
    attribute is set it may not be set to a different value (this catches two loaders that
    disagree about the same dataset).

    Examples:
        >>> MetadataCatalog.get("mydataset").thing_classes = ["person", "dog"]
        >>> MetadataCatalog.get("mydataset").thing_classes
        ['person', 'dog']
    """

    # the name of the dataset; set by MetadataCatalog.get
    name: str = "N/A"

    _RENAMED = {
        "class_names": "thing_classes",
        "dataset_id_to_contiguous_id": "thing_dataset_id_to_contiguous_id",
        "stuff_class_names": "stuff_classes",
    }
    _warned: set = set()

    @classmethod
    def _warn_renamed(cls, key: str) -> None:
        if key not in cls._warned:
            cls._warned.add(key)
            logger.warning("Metadata '%s' was renamed to '%s'!", key, cls._RENAMED[key])

    def __getattr__(self, key: str) -> Any:
        # only called when normal lookup fails
        if key in self._RENAMED:
            self._warn_renamed(key)
            return getattr(self, self._RENAMED[key])
        if key.startswith("__"):
            # keep copy/pickle protocols working
            raise AttributeError(key)
        # "name" exists in every metadata
        if len(self.__dict__) > 1:
            raise AttributeError(
                f"Attribute '{key}' does not exist in the metadata of dataset '{self.name}'. "
                f"Available keys are {sorted(self.__dict__.keys())}."
            )
        raise AttributeError(
            f"Attribute '{key}' does not exist in the metadata of dataset '{self.name}': "
            "metadata is empty."
        )

    def __setattr__(self, key: str, val: Any) -> None:
        if key in self._RENAMED:
            self._warn_renamed(key)
            key = self._RENAMED[key]
        # Ensure that metadata of the same name stays consistent
        if key in self.__dict__ or key == "name":
            oldval = getattr(self, key)
            if not _values_equal(oldval, val):
                raise ValueError(
                    f"Attribute '{key}' in the metadata of '{self.name}' cannot be set to a "
                    f"different value!\n{oldval} != {val}"
                )
            return
        super().__setattr__(key, val)

    def as_dict(self) -> dict:
        """Returns all the metadata as a (shallow-copied) dict."""
        return copy.copy(self.__dict__)

    def set(self, **kwargs: Any) -> Metadata:
        """Set multiple metadata with kwargs; returns ``self``."""
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Access an attribute and return its value if exists. Otherwise return ``default``."""
        try:
            return getattr(self, key)
        except AttributeError:
            return default


class _MetadataCatalog(UserDict):
    """MetadataCatalog is a global dictionary that provides access to :class:`Metadata` of a
    given dataset.

    The metadata associated with a certain name is a singleton: once created, the metadata will
    stay alive and will be returned by future calls to ``get(name)``. It's like global variables,
    so don't abuse it. It's meant for storing knowledge that's constant and shared across the
    execution of the program, e.g.: the class names in COCO.
    """

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        """Return the :class:`Metadata` of ``name``, creating an empty one on first access.

        Raises:
            TypeError: ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"MetadataCatalog.get: name must be a non-empty str, got {name!r}")
        _register_builtin_once()
        r = self.data.get(name)
        if r is None:
            r = self.data[name] = Metadata(name=name)
        return r

    def list(self) -> list[str]:
        """List all registered metadata names."""
        _register_builtin_once()
        return list(self.data.keys())

    def remove(self, name: str) -> None:
        """Remove the metadata of ``name``; raises ``KeyError`` when absent."""
        _register_builtin_once()
        try:
            self.data.pop(name)
        except KeyError as e:
            raise KeyError(f"No metadata registered for dataset '{name}', cannot remove it") from e

    def __str__(self) -> str:
        return f"MetadataCatalog(registered metadata: {', '.join(self.data.keys())})"

    __repr__ = __str__


MetadataCatalog = _MetadataCatalog()

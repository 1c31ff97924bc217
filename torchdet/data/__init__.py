"""Datasets, mappers, samplers and loaders (Detectron2's ``detectron2.data``).

``detection_utils`` is used through its module (``from torchdet.data import detection_utils``),
as in Detectron2. Names are resolved on first access (PEP 562), so importing one submodule
(e.g. ``torchdet.data.catalog``) does not import the loaders and the structures they need.
Taking ``DatasetCatalog``/``MetadataCatalog`` from here also registers the builtin datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule defining it (None: the name is the submodule itself)
_EXPORTS: dict[str, str | None] = {
    "datasets": None,
    "detection_utils": None,
    "samplers": None,
    "transforms": None,
    "DatasetCatalog": "catalog",
    "Metadata": "catalog",
    "MetadataCatalog": "catalog",
    "DatasetFromList": "common",
    "MapDataset": "common",
    "ToIterableDataset": "common",
    "DatasetMapper": "dataset_mapper",
    "build_batch_data_loader": "build",
    "build_detection_test_loader": "build",
    "build_detection_train_loader": "build",
    "get_detection_dataset_dicts": "build",
    "load_proposals_into_dataset": "build",
    "print_instances_class_histogram": "build",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'torchdet.data' has no attribute {name!r}")
    module_name = _EXPORTS[name]
    if module_name == "catalog":
        # As with ``import detectron2.data``: the catalogs come with the builtin datasets
        # registered (registration is lazy: it touches no file).
        importlib.import_module(".datasets", __name__)
    if module_name is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

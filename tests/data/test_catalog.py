"""DatasetCatalog / MetadataCatalog / Metadata: registration, lookup, renames and conflicts."""

from __future__ import annotations

import copy
import logging
import pickle

import numpy as np
import pytest

from torchdet.data.catalog import DatasetCatalog, Metadata, MetadataCatalog


@pytest.fixture
def name(request: pytest.FixtureRequest):
    """A dataset name unique to the test, removed from both catalogs afterwards."""
    n = f"_test_catalog_{request.node.name}"
    yield n
    for catalog in (DatasetCatalog, MetadataCatalog):
        if n in catalog.list():
            catalog.remove(n)


def test_register_get_list_remove(name: str) -> None:
    calls = []

    def load() -> list[dict]:
        calls.append(1)
        return [{"file_name": "a.jpg", "image_id": 7}]

    DatasetCatalog.register(name, load)
    assert calls == []  # registering is lazy
    assert name in DatasetCatalog.list()
    assert DatasetCatalog.get(name) == [{"file_name": "a.jpg", "image_id": 7}]
    assert DatasetCatalog.get(name) == [{"file_name": "a.jpg", "image_id": 7}]
    assert len(calls) == 2  # each get calls the loader again
    DatasetCatalog.remove(name)
    assert name not in DatasetCatalog.list()
    with pytest.raises(KeyError, match="not registered"):
        DatasetCatalog.remove(name)


def test_duplicate_name_raises(name: str) -> None:
    DatasetCatalog.register(name, lambda: [])
    with pytest.raises(ValueError, match=f"'{name}' is already registered"):
        DatasetCatalog.register(name, lambda: [{"x": 1}])
    assert DatasetCatalog.get(name) == []  # the first registration is kept


def test_register_requires_callable(name: str) -> None:
    with pytest.raises(TypeError, match="must be callable"):
        DatasetCatalog.register(name, [{"file_name": "a.jpg"}])  # type: ignore[arg-type]
    assert name not in DatasetCatalog.list()


def test_get_unknown_lists_available(name: str) -> None:
    DatasetCatalog.register(name, lambda: [])
    with pytest.raises(KeyError, match=rf"'{name}_missing' is not registered.*{name}"):
        DatasetCatalog.get(name + "_missing")


def test_metadata_is_a_singleton_with_name(name: str) -> None:
    meta = MetadataCatalog.get(name)
    assert meta.name == name
    assert MetadataCatalog.get(name) is meta
    meta.thing_classes = ["a", "b"]
    assert MetadataCatalog.get(name).thing_classes == ["a", "b"]
    assert name in MetadataCatalog.list()
    MetadataCatalog.remove(name)
    assert MetadataCatalog.get(name) is not meta
    assert MetadataCatalog.get(name).as_dict() == {"name": name}


def test_metadata_conflicting_value_raises(name: str) -> None:
    meta = MetadataCatalog.get(name).set(thing_classes=["a", "b"], ignore_label=255)
    meta.thing_classes = ["a", "b"]  # the same value again is fine
    meta.set(ignore_label=255)
    with pytest.raises(ValueError, match="'thing_classes' in the metadata of .* different value"):
        meta.thing_classes = ["a", "c"]
    with pytest.raises(ValueError, match="ignore_label"):
        meta.set(ignore_label=0)
    with pytest.raises(ValueError, match="'name'"):
        meta.name = "other"
    assert meta.thing_classes == ["a", "b"]
    assert meta.ignore_label == 255


def test_metadata_array_values_compare_elementwise(name: str) -> None:
    meta = MetadataCatalog.get(name)
    meta.pixel_mean = np.array([1.0, 2.0, 3.0])
    meta.pixel_mean = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="pixel_mean"):
        meta.pixel_mean = np.array([1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="pixel_mean"):
        meta.pixel_mean = np.array([1.0, 2.0])


def test_legacy_names_are_renamed(name: str, caplog: pytest.LogCaptureFixture) -> None:
    meta = MetadataCatalog.get(name)
    with caplog.at_level(logging.WARNING):
        meta.class_names = ["x", "y"]
        meta.dataset_id_to_contiguous_id = {3: 0, 9: 1}
        meta.stuff_class_names = ["s"]
    d = meta.as_dict()
    assert d["thing_classes"] == ["x", "y"]
    assert d["thing_dataset_id_to_contiguous_id"] == {3: 0, 9: 1}
    assert d["stuff_classes"] == ["s"]
    assert "class_names" not in d
    assert meta.class_names == ["x", "y"]  # read through the new name
    assert meta.dataset_id_to_contiguous_id == {3: 0, 9: 1}
    with pytest.raises(ValueError, match="thing_classes"):
        meta.class_names = ["z"]


def test_metadata_missing_attribute(name: str) -> None:
    meta = MetadataCatalog.get(name)
    with pytest.raises(AttributeError, match="metadata is empty"):
        _ = meta.thing_classes
    meta.evaluator_type = "coco"
    with pytest.raises(AttributeError, match=r"'thing_classes' does not exist.*evaluator_type"):
        _ = meta.thing_classes
    assert meta.get("thing_classes") is None
    assert meta.get("thing_classes", ["d"]) == ["d"]
    assert meta.get("evaluator_type") == "coco"


def test_metadata_copy_and_pickle() -> None:
    meta = Metadata(name="m").set(thing_classes=["a"], ids={1: 0})
    for clone in (copy.deepcopy(meta), pickle.loads(pickle.dumps(meta))):
        assert clone.as_dict() == {"name": "m", "thing_classes": ["a"], "ids": {1: 0}}
    d = meta.as_dict()
    d["extra"] = 1  # as_dict returns a copy
    assert meta.get("extra") is None


def test_metadata_get_rejects_bad_name() -> None:
    with pytest.raises(TypeError):
        MetadataCatalog.get("")


def test_builtin_names_available_through_the_catalogs() -> None:
    # no explicit import of torchdet.data.datasets: the catalogs register the builtins on use
    assert "coco_2017_val" in DatasetCatalog.list()
    assert MetadataCatalog.get("coco_2017_val").evaluator_type == "coco"
    with pytest.raises(ValueError, match="'coco_2017_val' is already registered"):
        DatasetCatalog.register("coco_2017_val", lambda: [])

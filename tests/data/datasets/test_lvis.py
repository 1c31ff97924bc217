"""load_lvis_json / register_lvis_instances / get_lvis_instances_meta on a hand-written json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.lvis import (
    get_lvis_instances_meta,
    load_lvis_json,
    register_lvis_instances,
)
from torchdet.structures import BoxMode

SQUARE = [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]]


def _lvis() -> dict:
    return {
        "images": [
            {
                "id": 9,
                "height": 10,
                "width": 12,
                "coco_url": "http://images.cocodataset.org/val2017/000000000009.jpg",
                "not_exhaustive_category_ids": [2],
                "neg_category_ids": [3],
            },
            {
                "id": 4,
                "height": 20,
                "width": 22,
                "coco_url": "http://images.cocodataset.org/train2017/000000000004.jpg",
            },
        ],
        "categories": [
            {"id": 2, "name": "air_conditioner", "synonyms": ["air_conditioner"], "image_count": 5},
            {
                "id": 1,
                "name": "aerosol_can",
                "synonyms": ["aerosol_can", "spray_can"],
                "image_count": 3,
            },
            {"id": 3, "name": "airplane", "synonyms": ["airplane", "aeroplane"], "image_count": 7},
        ],
        "annotations": [
            {
                "id": 11,
                "image_id": 9,
                "category_id": 3,
                "bbox": [1, 2, 3, 4],
                "segmentation": SQUARE,
                "area": 16,
            },
            {
                "id": 12,
                "image_id": 4,
                "category_id": 1,
                "bbox": [0, 0, 4, 4],
                "segmentation": SQUARE,
                "area": 16,
            },
        ],
    }


@pytest.fixture
def dataset_name(request: pytest.FixtureRequest):
    n = f"lvis_v1_test_{request.node.name}"
    yield n
    for catalog in (DatasetCatalog, MetadataCatalog):
        if n in catalog.list():
            catalog.remove(n)


def test_load_lvis_json(tmp_path: Path, dataset_name: str) -> None:
    json_file = tmp_path / "lvis.json"
    json_file.write_text(json.dumps(_lvis()))
    dicts = load_lvis_json(json_file, "/coco/", dataset_name)
    assert [d["image_id"] for d in dicts] == [4, 9]
    assert dicts[0]["file_name"] == os.path.join("/coco/train2017", "000000000004.jpg")
    assert dicts[1]["file_name"] == os.path.join("/coco/val2017", "000000000009.jpg")
    assert dicts[1]["not_exhaustive_category_ids"] == [2] and dicts[1]["neg_category_ids"] == [3]
    assert dicts[0]["neg_category_ids"] == []
    (a,) = dicts[1]["annotations"]
    assert a == {
        "bbox": [1, 2, 3, 4],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": 2,
        "segmentation": SQUARE,
    }
    assert dicts[0]["annotations"][0]["category_id"] == 0
    meta = MetadataCatalog.get(dataset_name)
    assert meta.thing_classes == ["aerosol_can", "air_conditioner", "airplane"]  # by id
    assert [c["image_count"] for c in meta.class_image_count] == [3, 5, 7]


def test_register_lvis_is_lazy_then_reads_classes(tmp_path: Path, dataset_name: str) -> None:
    json_file = tmp_path / "later.json"
    register_lvis_instances(
        dataset_name, get_lvis_instances_meta(dataset_name), json_file, "/coco/"
    )
    meta = MetadataCatalog.get(dataset_name)
    assert meta.evaluator_type == "lvis" and meta.get("thing_classes") is None
    json_file.write_text(json.dumps(_lvis()))
    assert len(DatasetCatalog.get(dataset_name)) == 2
    assert len(meta.thing_classes) == 3

    cocofied = get_lvis_instances_meta("lvis_v0.5_val_cocofied")
    assert len(cocofied["thing_classes"]) == 80
    with pytest.raises(ValueError, match="No built-in metadata"):
        get_lvis_instances_meta("coco_2017_val")


def test_lvis_bad_input(tmp_path: Path) -> None:
    data = _lvis()
    data["annotations"][1]["segmentation"] = [[0.0, 0.0, 1.0, 1.0]]
    json_file = tmp_path / "bad.json"
    json_file.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"annotation id 12 \(image id 4\) contains an invalid polygon"
    ):
        load_lvis_json(json_file, "")

    data = _lvis()
    data["annotations"][1]["id"] = 11
    json_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"not unique! Duplicated ids: \[11\]"):
        load_lvis_json(json_file, "")

    data = _lvis()
    data["annotations"][0]["category_id"] = 8
    json_file.write_text(json.dumps(data))
    with pytest.raises(KeyError, match="annotation id 11 .* category_id=8"):
        load_lvis_json(json_file, "")

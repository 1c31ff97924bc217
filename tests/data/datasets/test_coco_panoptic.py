"""COCO panoptic loaders and registrations on the shapes val split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.coco_panoptic import (
    load_coco_panoptic_json,
    merge_to_panoptic,
    register_coco_panoptic,
    register_coco_panoptic_separated,
)

THING_MAP = {1: 0, 2: 1, 3: 2}
STUFF_MAP = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}


@pytest.fixture
def prefix(request: pytest.FixtureRequest):
    """A name prefix unique to the test; every name starting with it is removed afterwards."""
    p = f"_test_pan_{request.node.name}"
    yield p
    for catalog in (DatasetCatalog, MetadataCatalog):
        for n in catalog.list():
            if n.startswith(p):
                catalog.remove(n)


def test_panoptic_separated_on_shapes_val(shapes_dir: Path, prefix: str) -> None:
    root = shapes_dir / "val"
    raw_instances = json.loads((root / "instances.json").read_text())
    register_coco_panoptic_separated(
        prefix,
        {
            "stuff_classes": ["things", "sky", "ground"],
            "stuff_dataset_id_to_contiguous_id": {0: 0, 4: 1, 5: 2},
        },
        str(root / "images"),
        str(root / "panoptic"),
        str(root / "panoptic.json"),
        str(root / "panoptic_stuff"),
        str(root / "instances.json"),
    )
    assert {prefix + "_separated", prefix + "_stuffonly"} <= set(DatasetCatalog.list())
    dicts = DatasetCatalog.get(prefix + "_separated")
    assert len(dicts) == 60
    for d in dicts:
        stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
        assert d["sem_seg_file_name"] == str(root / "panoptic_stuff" / (stem + ".png"))
        assert d["file_name"] == str(root / "images" / (stem + ".jpg"))
    n_anns = sum(len(d["annotations"]) for d in dicts)
    assert n_anns == len(raw_instances["annotations"]) == 168

    meta = MetadataCatalog.get(prefix + "_separated")
    assert meta.evaluator_type == "coco_panoptic_seg"
    assert meta.ignore_label == 255
    assert meta.thing_classes == ["circle", "square", "triangle"]  # set by the loader
    assert meta.stuff_classes == ["things", "sky", "ground"]
    assert meta.panoptic_json == str(root / "panoptic.json")

    stuff = DatasetCatalog.get(prefix + "_stuffonly")
    assert [d["sem_seg_file_name"] for d in stuff] == [d["sem_seg_file_name"] for d in dicts]
    assert MetadataCatalog.get(prefix + "_stuffonly").evaluator_type == "sem_seg"


def test_load_coco_panoptic_json_shapes_val(shapes_dir: Path) -> None:
    root = shapes_dir / "val"
    raw = json.loads((root / "panoptic.json").read_text())
    meta = {
        "thing_dataset_id_to_contiguous_id": THING_MAP,
        "stuff_dataset_id_to_contiguous_id": STUFF_MAP,
    }
    dicts = load_coco_panoptic_json(
        root / "panoptic.json", root / "images", root / "panoptic", meta
    )
    assert len(dicts) == len(raw["annotations"]) == 60
    for d, ann in zip(dicts, raw["annotations"]):
        assert d["image_id"] == ann["image_id"]
        assert d["pan_seg_file_name"] == str(root / "panoptic" / ann["file_name"])
        assert d["file_name"] == str(root / "images" / (Path(ann["file_name"]).stem + ".jpg"))
        assert [s["id"] for s in d["segments_info"]] == [s["id"] for s in ann["segments_info"]]
        for s, r in zip(d["segments_info"], ann["segments_info"]):
            assert s["isthing"] == (r["category_id"] <= 3)
            assert s["category_id"] == r["category_id"] - 1
            assert s["area"] == r["area"]
    # the raw json's category ids are not modified in place on a second load
    again = load_coco_panoptic_json(
        root / "panoptic.json", root / "images", root / "panoptic", meta
    )
    assert again == dicts


def test_register_coco_panoptic_standard(shapes_dir: Path, prefix: str) -> None:
    root = shapes_dir / "val"
    register_coco_panoptic(
        prefix,
        {
            "thing_dataset_id_to_contiguous_id": THING_MAP,
            "stuff_dataset_id_to_contiguous_id": STUFF_MAP,
        },
        str(root / "images"),
        str(root / "panoptic"),
        str(root / "panoptic.json"),
        str(root / "instances.json"),
    )
    meta = MetadataCatalog.get(prefix)
    assert (meta.label_divisor, meta.ignore_label, meta.evaluator_type) == (
        1000,
        255,
        "coco_panoptic_seg",
    )
    assert meta.json_file == str(root / "instances.json")
    assert len(DatasetCatalog.get(prefix)) == 60


def test_unknown_segment_category(tmp_path: Path) -> None:
    (tmp_path / "img.jpg").write_bytes(b"")
    (tmp_path / "img.png").write_bytes(b"")
    data = {
        "images": [{"id": 4, "file_name": "img.jpg", "height": 2, "width": 2}],
        "annotations": [
            {
                "image_id": 4,
                "file_name": "img.png",
                "segments_info": [{"id": 77, "category_id": 9, "iscrowd": 0}],
            }
        ],
        "categories": [],
    }
    json_file = tmp_path / "pan.json"
    json_file.write_text(json.dumps(data))
    meta = {
        "thing_dataset_id_to_contiguous_id": THING_MAP,
        "stuff_dataset_id_to_contiguous_id": {4: 3},
    }
    with pytest.raises(KeyError, match="segment id 77 of image id 4 has category_id=9") as e:
        load_coco_panoptic_json(json_file, tmp_path, tmp_path, meta)
    assert str(json_file) in str(e.value)

    data["annotations"] = []
    json_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no 'annotations'"):
        load_coco_panoptic_json(json_file, tmp_path, tmp_path, meta)


def test_missing_png_is_reported(tmp_path: Path) -> None:
    (tmp_path / "img.jpg").write_bytes(b"")
    data = {
        "images": [{"id": 1, "file_name": "img.jpg", "height": 2, "width": 2}],
        "annotations": [{"image_id": 1, "file_name": "img.png", "segments_info": []}],
    }
    json_file = tmp_path / "pan.json"
    json_file.write_text(json.dumps(data))
    meta = {"thing_dataset_id_to_contiguous_id": {}, "stuff_dataset_id_to_contiguous_id": {}}
    with pytest.raises(FileNotFoundError, match="pan_seg_file_name of image id 1"):
        load_coco_panoptic_json(json_file, tmp_path, tmp_path / "pngs", meta)


def test_merge_to_panoptic() -> None:
    det = [
        {"file_name": "a.jpg", "image_id": 1, "annotations": [1]},
        {"file_name": "b.jpg", "image_id": 2},
    ]
    sem = [
        {"file_name": "b.jpg", "sem_seg_file_name": "b.png"},
        {"file_name": "a.jpg", "sem_seg_file_name": "a.png"},
    ]
    merged = merge_to_panoptic(det, sem)
    assert merged == [
        {"file_name": "a.jpg", "image_id": 1, "annotations": [1], "sem_seg_file_name": "a.png"},
        {"file_name": "b.jpg", "image_id": 2, "sem_seg_file_name": "b.png"},
    ]
    assert "sem_seg_file_name" not in det[0]  # inputs untouched
    with pytest.raises(KeyError, match=r"c.jpg \(image id 3\) has no semantic"):
        merge_to_panoptic([{"file_name": "c.jpg", "image_id": 3}], sem)
    with pytest.raises(ValueError, match="no semantic segmentation entries"):
        merge_to_panoptic(det, [])

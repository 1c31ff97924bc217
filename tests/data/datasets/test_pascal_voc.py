"""load_voc_instances / register_pascal_voc on a hand-written VOC folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.pascal_voc import CLASS_NAMES, load_voc_instances, register_pascal_voc
from torchdet.structures import BoxMode


def _xml(objects: str, h: int = 375, w: int = 500) -> str:
    size = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
    return f"<annotation>{size}{objects}</annotation>"


def _obj(name: str, box: tuple, difficult: int = 0) -> str:
    x0, y0, x1, y1 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
    )


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("000005\n000007\n")
    (tmp_path / "Annotations" / "000005.xml").write_text(
        _xml(_obj("chair", (263, 211, 324, 339)) + _obj("dog", (1, 1, 500, 375), difficult=1))
    )
    (tmp_path / "Annotations" / "000007.xml").write_text(_xml("", h=333, w=500))
    return tmp_path


def test_load_voc_instances(voc: Path) -> None:
    dicts = load_voc_instances(voc, "train", CLASS_NAMES)
    assert [d["image_id"] for d in dicts] == ["000005", "000007"]
    assert dicts[0]["file_name"] == os.path.join(str(voc), "JPEGImages", "000005.jpg")
    assert (dicts[0]["height"], dicts[0]["width"]) == (375, 500)
    chair, dog = dicts[0]["annotations"]
    assert chair == {
        "category_id": 8,
        "bbox": [262.0, 210.0, 324.0, 339.0],
        "bbox_mode": BoxMode.XYXY_ABS,
    }
    assert dog["category_id"] == 11 and dog["bbox"] == [0.0, 0.0, 500.0, 375.0]  # difficult kept
    assert dicts[1]["annotations"] == [] and dicts[1]["height"] == 333


def test_register_pascal_voc(voc: Path) -> None:
    name = "_test_voc_train"
    try:
        register_pascal_voc(name, voc, "train", 2007, class_names=["chair", "dog"])
        meta = MetadataCatalog.get(name)
        assert (meta.thing_classes, meta.year, meta.split) == (["chair", "dog"], 2007, "train")
        assert [a["category_id"] for a in DatasetCatalog.get(name)[0]["annotations"]] == [0, 1]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_voc_errors(voc: Path) -> None:
    with pytest.raises(ValueError, match="class 'dog', which is not in class_names") as e:
        load_voc_instances(voc, "train", ["chair"])
    assert "000005.xml" in str(e.value)
    with pytest.raises(FileNotFoundError, match="val.txt"):
        load_voc_instances(voc, "val", CLASS_NAMES)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000009\n")
    with pytest.raises(FileNotFoundError, match="000009.xml"):
        load_voc_instances(voc, "test", CLASS_NAMES)
    (voc / "ImageSets" / "Main" / "bad.txt").write_text("000010\n")
    (voc / "Annotations" / "000010.xml").write_text(
        "<annotation><size><width>5</width></size></annotation>"
    )
    with pytest.raises(ValueError, match="000010.xml' has no <./size/height>"):
        load_voc_instances(voc, "bad", CLASS_NAMES)

"""Cityscapes instance / semantic / panoptic loaders on a hand-made one-image city."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from torchdet.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from torchdet.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic
from torchdet.structures import BoxMode

STEM = "aachen_000000_000019"


@pytest.fixture
def city(tmp_path: Path) -> Path:
    img_dir = tmp_path / "leftImg8bit" / "train" / "aachen"
    gt_dir = tmp_path / "gtFine" / "train" / "aachen"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    (img_dir / f"{STEM}_leftImg8bit.png").write_bytes(b"")
    objects = [
        {"label": "road", "polygon": [[0, 30], [59, 30], [59, 39], [0, 39]]},
        # a car 10..29 x 5..14, partly hidden by a person drawn later (x 20..29)
        {"label": "car", "polygon": [[10, 5], [29, 5], [29, 14], [10, 14]]},
        {"label": "person", "polygon": [[20, 0], [29, 0], [29, 19], [20, 19]]},
        {"label": "cargroup", "polygon": [[40, 5], [49, 5], [49, 9], [40, 9]]},
        {"label": "caravan", "polygon": [[50, 20], [55, 20], [55, 25], [50, 25]]},  # ignored
        {"label": "license plate", "polygon": [[1, 1], [3, 1], [3, 3]]},
        {"label": "car", "polygon": [[0, 0], [5, 0], [5, 5]], "deleted": 1},
    ]
    (gt_dir / f"{STEM}_gtFine_polygons.json").write_text(
        json.dumps({"imgHeight": 40, "imgWidth": 60, "objects": objects})
    )
    return tmp_path


def test_instances_from_json(city: Path) -> None:
    (d,) = load_cityscapes_instances(city / "leftImg8bit/train", city / "gtFine/train")
    assert d["file_name"].endswith(f"aachen/{STEM}_leftImg8bit.png")
    assert d["image_id"] == f"{STEM}_leftImg8bit.png"
    assert (d["height"], d["width"]) == (40, 60)
    by_cat = {(a["category_id"], a["iscrowd"]): a for a in d["annotations"]}
    # contiguous ids: person 0, rider 1, car 2, ...; caravan is not evaluated
    assert set(by_cat) == {(0, False), (2, False), (2, True)}
    car = by_cat[(2, False)]
    assert car["bbox"] == (10.0, 5.0, 19.0, 14.0)  # the visible part left of the person
    assert car["bbox_mode"] == BoxMode.XYXY_ABS
    person = by_cat[(0, False)]
    assert person["bbox"] == (20.0, 0.0, 29.0, 19.0)
    xy = np.asarray(person["segmentation"][0]).reshape(-1, 2)
    assert xy.min(0).tolist() == [20, 0] and xy.max(0).tolist() == [29, 19]
    assert by_cat[(2, True)]["bbox"] == (40.0, 5.0, 49.0, 9.0)


def test_instances_from_png_as_rle(city: Path) -> None:
    inst = np.zeros((40, 60), np.int32)
    inst[30:40] = 7  # road
    inst[5:15, 10:20] = 26000  # car instance 0
    inst[0:20, 20:30] = 24000  # person
    inst[5:10, 40:50] = 26  # crowd car
    gt = city / "gtFine/train/aachen"
    Image.fromarray(inst.astype(np.uint16)).save(gt / f"{STEM}_gtFine_instanceIds.png")
    (d,) = load_cityscapes_instances(
        city / "leftImg8bit/train", city / "gtFine/train", from_json=False, to_polygons=False
    )
    anns = sorted(d["annotations"], key=lambda a: a["bbox"])
    assert [(a["category_id"], a["iscrowd"]) for a in anns] == [(2, False), (0, False), (2, True)]
    car_mask = mask_util.decode(anns[0]["segmentation"])
    assert car_mask.sum() == 100 and car_mask[5:15, 10:20].all()
    with pytest.raises(ValueError, match="not supported"):
        load_cityscapes_instances(city / "leftImg8bit/train", city / "gtFine/train", True, False)


def test_semantic(city: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pip install cityscapesscripts"):
        load_cityscapes_semantic(city / "leftImg8bit/train", city / "gtFine/train")
    label = city / "gtFine/train/aachen" / f"{STEM}_gtFine_labelTrainIds.png"
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(label)
    (d,) = load_cityscapes_semantic(city / "leftImg8bit/train", city / "gtFine/train")
    assert d["sem_seg_file_name"] == str(label)
    assert (d["height"], d["width"]) == (40, 60)


def test_panoptic(city: Path) -> None:
    pan_dir = city / "gtFine" / "cityscapes_panoptic_train"
    pan_dir.mkdir()
    (pan_dir / f"{STEM}_gtFine_panoptic.png").write_bytes(b"")
    gt_json = city / "gtFine" / "cityscapes_panoptic_train.json"
    meta = {
        "thing_dataset_id_to_contiguous_id": {26: 13},
        "stuff_dataset_id_to_contiguous_id": {7: 0},
    }
    with pytest.raises(FileNotFoundError, match="createPanopticImgs"):
        load_cityscapes_panoptic(city / "leftImg8bit/train", pan_dir, gt_json, meta)
    gt_json.write_text(
        json.dumps(
            {
                "annotations": [
                    {
                        "image_id": STEM,
                        "file_name": f"{STEM}_gtFine_panoptic.png",
                        "segments_info": [
                            {"id": 7, "category_id": 7, "iscrowd": 0},
                            {"id": 26000, "category_id": 26, "iscrowd": 0},
                        ],
                    }
                ]
            }
        )
    )
    sem = city / "gtFine/train/aachen" / f"{STEM}_gtFine_labelTrainIds.png"
    with pytest.raises(FileNotFoundError, match="labelTrainIds"):
        load_cityscapes_panoptic(city / "leftImg8bit/train", pan_dir, gt_json, meta)
    sem.write_bytes(b"")
    (d,) = load_cityscapes_panoptic(city / "leftImg8bit/train", pan_dir, gt_json, meta)
    assert d["image_id"] == STEM
    assert d["sem_seg_file_name"] == str(sem)
    assert [s["category_id"] for s in d["segments_info"]] == [0, 13]

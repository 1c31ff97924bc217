"""Loaders on the small real COCO-format sets of ``shared/data/real`` (skipped when absent)."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.builtin_meta import COCO_CATEGORIES, get_builtin_metadata
from torchdet.data.datasets.coco import (
    convert_to_coco_dict,
    load_coco_json,
    register_coco_instances,
)
from torchdet.data.datasets.coco_panoptic import load_coco_panoptic_json


@pytest.fixture(scope="module")
def real_dir() -> Path:
    default = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
    root = Path(os.environ.get("TORCHDET_REAL_DATA_DIR", default))
    if not (root / "README.md").is_file():
        pytest.skip(f"real data sets not found at {root} (set TORCHDET_REAL_DATA_DIR)")
    return root


@pytest.fixture
def dataset_name(request: pytest.FixtureRequest):
    n = f"_test_real_{request.node.name}"
    yield n
    for catalog in (DatasetCatalog, MetadataCatalog):
        if n in catalog.list():
            catalog.remove(n)


def test_coco_person_keypoints(real_dir: Path, dataset_name: str) -> None:
    root = real_dir / "coco_person"
    raw = json.loads((root / "test_coco.json").read_text())
    register_coco_instances(
        dataset_name, get_builtin_metadata("coco_person"), str(root / "test_coco.json"), str(root)
    )
    dicts = DatasetCatalog.get(dataset_name)
    assert len(dicts) == 4 and sum(len(d["annotations"]) for d in dicts) == 14
    for d in dicts:
        assert os.path.isfile(d["file_name"])
    raw_by_id = {a["bbox"][0]: a for a in raw["annotations"]}
    for a in (a for d in dicts for a in d["annotations"]):
        assert a["category_id"] == 0
        r = raw_by_id[a["bbox"][0]]
        assert len(a["keypoints"]) == 51
        expected = [v + 0.5 if i % 3 != 2 else v for i, v in enumerate(r["keypoints"])]
        assert a["keypoints"] == expected
    assert MetadataCatalog.get(dataset_name).thing_classes == ["person"]

    coco = convert_to_coco_dict(dataset_name)
    converted = sorted(coco["annotations"], key=lambda a: a["bbox"][0])
    original = sorted(raw["annotations"], key=lambda a: a["bbox"][0])
    for c, r in zip(converted, original):
        assert c["keypoints"] == pytest.approx(r["keypoints"])
        assert c["num_keypoints"] == r["num_keypoints"]
        assert c["bbox"] == pytest.approx(r["bbox"], abs=1e-3)
        # shoelace area of the polygons equals COCO's stored area (also polygon-based)
        assert c["area"] == pytest.approx(r["area"], rel=1e-3)


def test_fruits_nuts_zero_based_image_ids(real_dir: Path, dataset_name: str) -> None:
    root = real_dir / "fruits_nuts"
    raw = json.loads((root / "trainval.json").read_text())
    dicts = load_coco_json(root / "trainval.json", root / "images", dataset_name)
    assert [d["image_id"] for d in dicts] == sorted(im["id"] for im in raw["images"])
    assert dicts[0]["image_id"] == 0
    counts = collections.Counter(a["category_id"] for d in dicts for a in d["annotations"])
    raw_counts = collections.Counter(a["category_id"] - 1 for a in raw["annotations"])
    assert counts == raw_counts and sum(counts.values()) == 165
    assert MetadataCatalog.get(dataset_name).thing_classes == ["date", "fig", "hazelnut"]


def test_panoptic_sample_and_coco_table(real_dir: Path) -> None:
    root = real_dir / "coco_panoptic_sample"
    raw = json.loads((root / "panoptic_examples.json").read_text())
    # the builtin table agrees with panopticapi's categories (ids, names, isthing, colours)
    assert [(c["id"], c["name"], c["isthing"], c["color"]) for c in raw["categories"]] == [
        (c["id"], c["name"], c["isthing"], c["color"]) for c in COCO_CATEGORIES
    ]
    meta = get_builtin_metadata("coco_panoptic_standard")
    dicts = load_coco_panoptic_json(
        root / "panoptic_examples.json", root / "input_images", root / "panoptic_examples", meta
    )
    assert len(dicts) == 2
    index = {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)}
    for d, ann in zip(dicts, raw["annotations"]):
        assert os.path.isfile(d["file_name"]) and os.path.isfile(d["pan_seg_file_name"])
        rgb = np.asarray(Image.open(d["pan_seg_file_name"]), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in d["segments_info"]}
        for s, r in zip(d["segments_info"], ann["segments_info"]):
            assert s["category_id"] == index[r["category_id"]]
            assert s["isthing"] == bool(COCO_CATEGORIES[index[r["category_id"]]]["isthing"])
            assert (ids == s["id"]).sum() == s["area"]

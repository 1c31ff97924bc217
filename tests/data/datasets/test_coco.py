"""load_coco_json, load_sem_seg, convert_to_coco_dict/json and register_coco_instances."""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.coco import (
    convert_to_coco_dict,
    convert_to_coco_json,
    load_coco_json,
    load_sem_seg,
    register_coco_instances,
)
from torchdet.structures import BoxMode


@pytest.fixture
def dataset_name(request: pytest.FixtureRequest):
    """A dataset name unique to the test, removed from both catalogs afterwards."""
    n = f"_test_coco_{request.node.name}"
    yield n
    for catalog in (DatasetCatalog, MetadataCatalog):
        if n in catalog.list():
            catalog.remove(n)


def _rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a binary mask (column-major run lengths)."""
    flat = mask.reshape(-1, order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


def _tiny_coco() -> dict:
    """3 images, non-contiguous category ids 1, 3, 7 (7 has 2 keypoints), a crowd RLE."""
    rle_mask = np.zeros((6, 5), np.uint8)
    rle_mask[1:4, 2:5] = 1  # 9 pixels
    return {
        "images": [
            {"id": 20, "file_name": "b.jpg", "height": 6, "width": 5},
            {"id": 10, "file_name": "a.jpg", "height": 40, "width": 30},
            {"id": 30, "file_name": "c.jpg", "height": 8, "width": 8},
        ],
        "categories": [
            {"id": 7, "name": "dog", "keypoints": ["nose", "tail"]},
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 3,
                "bbox": [1.0, 2.0, 10.0, 20.0],
                "area": 100.0,
                "iscrowd": 0,
                "segmentation": [[1.0, 2.0, 11.0, 2.0, 11.0, 22.0, 1.0, 22.0]],
            },
            {
                "id": 2,
                "image_id": 10,
                "category_id": 7,
                "bbox": [0.0, 0.0, 5.0, 5.0],
                "area": 12.5,
                "iscrowd": 0,
                "segmentation": [[0.0, 0.0, 5.0, 0.0, 0.0, 5.0]],
                "keypoints": [1, 2, 2, 3, 4, 1],
                "num_keypoints": 2,
                "score_hint": 0.5,
            },
            {
                "id": 5,
                "image_id": 20,
                "category_id": 1,
                "bbox": [2.0, 1.0, 3.0, 3.0],
                "area": 9.0,
                "iscrowd": 1,
                "segmentation": {"size": [6, 5], "counts": _rle_counts(rle_mask)},
            },
        ],
    }


def _write(tmp_path: Path, data, name: str = "ann.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_shapes_val_counts_and_contiguous_ids(shapes_dir: Path, dataset_name: str) -> None:
    json_file = shapes_dir / "val" / "instances.json"
    raw = json.loads(json_file.read_text())
    image_root = str(shapes_dir / "val" / "images")
    dicts = load_coco_json(json_file, image_root, dataset_name)

    assert len(dicts) == len(raw["images"]) == 60
    assert [d["image_id"] for d in dicts] == sorted(im["id"] for im in raw["images"])
    expected_per_cat = collections.Counter(a["category_id"] for a in raw["annotations"])
    got_per_cat = collections.Counter(a["category_id"] for d in dicts for a in d["annotations"])
    # categories 1, 2, 3 -> 0, 1, 2
    assert got_per_cat == {c - 1: n for c, n in expected_per_cat.items()}
    assert sum(got_per_cat.values()) == len(raw["annotations"]) == 168

    meta = MetadataCatalog.get(dataset_name)
    assert meta.thing_classes == ["circle", "square", "triangle"]
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}

    first = raw["images"][0]
    d0 = next(d for d in dicts if d["image_id"] == first["id"])
    assert d0["file_name"] == os.path.join(image_root, first["file_name"])
    assert (d0["height"], d0["width"]) == (first["height"], first["width"])
    a0 = next(a for a in raw["annotations"] if a["image_id"] == first["id"])
    assert d0["annotations"][0]["bbox"] == a0["bbox"]
    assert d0["annotations"][0]["bbox_mode"] == BoxMode.XYWH_ABS
    assert d0["annotations"][0]["segmentation"] == a0["segmentation"]
    assert d0["annotations"][0]["iscrowd"] == 0


def test_tiny_json_noncontiguous_crowd_rle_keypoints(tmp_path: Path, dataset_name: str) -> None:
    data = _tiny_coco()
    json_file = _write(tmp_path, data)
    dicts = load_coco_json(json_file, "imgs", dataset_name, extra_annotation_keys=["score_hint"])

    assert [d["image_id"] for d in dicts] == [10, 20, 30]  # sorted by image id
    assert [d["file_name"] for d in dicts] == [os.path.join("imgs", f + ".jpg") for f in "abc"]
    meta = MetadataCatalog.get(dataset_name)
    assert meta.thing_classes == ["person", "car", "dog"]  # sorted by category id
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 3: 1, 7: 2}

    box, dog = dicts[0]["annotations"]
    assert box["category_id"] == 1 and dog["category_id"] == 2
    assert box["bbox"] == [1.0, 2.0, 10.0, 20.0]
    assert dog["keypoints"] == [1.5, 2.5, 2, 3.5, 4.5, 1]  # +0.5 on x, y only
    assert dog["score_hint"] == 0.5
    assert "area" not in dog  # only the standard + requested keys

    (crowd,) = dicts[1]["annotations"]
    assert crowd["iscrowd"] == 1 and crowd["category_id"] == 0
    rle = crowd["segmentation"]
    assert isinstance(rle["counts"], bytes)  # uncompressed RLE was compressed
    mask = mask_util.decode(rle)
    assert mask.shape == (6, 5) and mask.sum() == 9 and mask[1:4, 2:5].all()
    assert dicts[2]["annotations"] == []
    # the loader does not modify a keypoints list it may see again
    assert load_coco_json(json_file, "imgs")[0]["annotations"][1]["keypoints"][0] == 1.5


def test_without_dataset_name_keeps_dataset_ids(tmp_path: Path) -> None:
    dicts = load_coco_json(_write(tmp_path, _tiny_coco()), "")
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [3, 7]


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", r"is not valid json"),
        ("[]", r"must contain a json object"),
        (json.dumps({"images": [], "annotations": [], "categories": []}), r"has no images"),
        (json.dumps({"annotations": []}), r"has no images"),
    ],
)
def test_invalid_or_empty_file(tmp_path: Path, content: str, match: str) -> None:
    json_file = _write(tmp_path, content)
    with pytest.raises(ValueError, match=match) as e:
        load_coco_json(json_file, "")
    assert json_file in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_json(missing, "")


def _corrupt(tmp_path: Path, ann_index: int, **changes) -> str:
    data = _tiny_coco()
    data["annotations"][ann_index].update(changes)
    return _write(tmp_path, data)


def _assert_names(err: pytest.ExceptionInfo, json_file: str, ann_id: int, image_id: int) -> None:
    msg = str(err.value)
    assert json_file in msg
    assert f"annotation id {ann_id}" in msg
    assert f"image id {image_id}" in msg


def test_unknown_category_id(tmp_path: Path, dataset_name: str) -> None:
    json_file = _corrupt(tmp_path, 0, category_id=4)
    with pytest.raises(KeyError, match="category_id=4") as e:
        load_coco_json(json_file, "", dataset_name)
    _assert_names(e, json_file, 1, 10)
    with pytest.raises(KeyError, match="category_id=4"):  # also without a dataset name
        load_coco_json(json_file, "")


@pytest.mark.parametrize("bbox", [[1.0, 2.0, -3.0, 4.0], [1.0, 2.0, 3.0, -0.5]])
def test_negative_box_size(tmp_path: Path, bbox: list) -> None:
    json_file = _corrupt(tmp_path, 2, bbox=bbox)
    with pytest.raises(ValueError, match="negative width or height") as e:
        load_coco_json(json_file, "")
    _assert_names(e, json_file, 5, 20)


def test_odd_polygon_raises(tmp_path: Path) -> None:
    json_file = _corrupt(tmp_path, 0, segmentation=[[1.0, 2.0, 11.0, 2.0, 11.0, 22.0, 1.0]])
    with pytest.raises(ValueError, match="odd number of coordinates") as e:
        load_coco_json(json_file, "")
    _assert_names(e, json_file, 1, 10)


def test_short_polygons_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _tiny_coco()
    # annotation 1 keeps its valid polygon; annotation 2 has only a 2-point polygon left
    data["annotations"][0]["segmentation"].append([0.0, 0.0, 1.0, 1.0])
    data["annotations"][1]["segmentation"] = [[0.0, 0.0, 5.0, 0.0]]
    json_file = _write(tmp_path, data)
    with caplog.at_level(logging.WARNING):
        dicts = load_coco_json(json_file, "")
    anns = dicts[0]["annotations"]
    assert len(anns) == 1  # annotation 2 is dropped as Detectron2 does
    assert anns[0]["segmentation"] == [[1.0, 2.0, 11.0, 2.0, 11.0, 22.0, 1.0, 22.0]]
    msg = caplog.text
    assert "fewer than 3 points from 2 annotations (ids [1, 2])" in msg
    assert "filtered out 1 instances" in msg and "(ids [2])" in msg
    assert json_file in msg


@pytest.mark.parametrize(
    "keypoints, match",
    [([1, 2, 2, 3, 4], "multiple of 3"), ([1, 2, 2, 3, 4, 1, 5, 5, 2], "declares 2")],
)
def test_bad_keypoints(tmp_path: Path, keypoints: list, match: str) -> None:
    json_file = _corrupt(tmp_path, 1, keypoints=keypoints)
    with pytest.raises(ValueError, match=match) as e:
        load_coco_json(json_file, "")
    _assert_names(e, json_file, 2, 10)


def test_duplicate_annotation_ids(tmp_path: Path) -> None:
    json_file = _corrupt(tmp_path, 2, id=1)
    with pytest.raises(ValueError, match=r"not unique! Duplicated ids: \[1\]") as e:
        load_coco_json(json_file, "")
    assert json_file in str(e.value)


def test_ignore_flag_rejected(tmp_path: Path) -> None:
    json_file = _corrupt(tmp_path, 0, ignore=1)
    with pytest.raises(ValueError, match="'ignore'") as e:
        load_coco_json(json_file, "")
    _assert_names(e, json_file, 1, 10)


def test_register_coco_instances_is_lazy(tmp_path: Path, dataset_name: str) -> None:
    json_file = str(tmp_path / "later.json")  # does not exist yet
    register_coco_instances(dataset_name, {"extra": 1}, json_file, str(tmp_path))
    meta = MetadataCatalog.get(dataset_name)
    assert (meta.json_file, meta.image_root, meta.evaluator_type, meta.extra) == (
        json_file,
        str(tmp_path),
        "coco",
        1,
    )
    _write(tmp_path, _tiny_coco(), "later.json")
    assert len(DatasetCatalog.get(dataset_name)) == 3
    assert meta.thing_classes == ["person", "car", "dog"]


def test_register_coco_instances_bad_args(dataset_name: str) -> None:
    with pytest.raises(TypeError, match="json_file"):
        register_coco_instances(dataset_name, {}, None, "imgs")  # type: ignore[arg-type]
    assert dataset_name not in DatasetCatalog.list()


def test_convert_round_trip(tmp_path: Path, dataset_name: str) -> None:
    json_file = _write(tmp_path, _tiny_coco())
    register_coco_instances(dataset_name, {}, json_file, "imgs")
    original = DatasetCatalog.get(dataset_name)
    before = copy.deepcopy(original)

    coco = convert_to_coco_dict(dataset_name)
    assert original == before  # the conversion does not modify the dataset dicts
    assert coco["categories"] == [
        {"id": 1, "name": "person"},
        {"id": 3, "name": "car"},
        {"id": 7, "name": "dog"},
    ]
    by_id = {a["image_id"]: [] for a in coco["annotations"]}
    for a in coco["annotations"]:
        by_id[a["image_id"]].append(a)
    box, dog = by_id[10]
    assert box["category_id"] == 3 and dog["category_id"] == 7
    assert box["area"] == pytest.approx(200.0)  # 10 x 20 rectangle polygon
    assert dog["area"] == pytest.approx(12.5)  # right triangle 5 x 5
    assert dog["keypoints"] == [1, 2, 2, 3, 4, 1]  # 0.5 offset removed
    assert dog["num_keypoints"] == 2
    (crowd,) = by_id[20]
    assert crowd["area"] == 9.0 and crowd["iscrowd"] == 1
    assert isinstance(crowd["segmentation"]["counts"], str)

    out = tmp_path / "sub" / "converted.json"
    convert_to_coco_json(dataset_name, out)
    assert not [p for p in out.parent.iterdir() if p.name != "converted.json"]  # no temp left
    reloaded = load_coco_json(out, "")
    assert [d["image_id"] for d in reloaded] == [d["image_id"] for d in original]
    for a, b in zip(original, reloaded):
        assert [x["bbox"] for x in a["annotations"]] == [x["bbox"] for x in b["annotations"]]
        # reloaded without a dataset name: dataset ids, which map back to the same classes
        id_map = {1: 0, 3: 1, 7: 2}
        assert [x["category_id"] for x in a["annotations"]] == [
            id_map[x["category_id"]] for x in b["annotations"]
        ]
        assert [x.get("keypoints") for x in a["annotations"]] == [
            x.get("keypoints") for x in b["annotations"]
        ]


def test_convert_boxes_to_xywh_and_cache(tmp_path: Path, dataset_name: str) -> None:
    DatasetCatalog.register(
        dataset_name,
        lambda: [
            {
                "file_name": "x.jpg",
                "image_id": 3,
                "height": 10,
                "width": 10,
                "annotations": [
                    {"bbox": [1.0, 2.0, 4.0, 8.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
                ],
            },
            {"file_name": "y.jpg", "image_id": 4, "height": 5, "width": 5, "annotations": []},
        ],
    )
    MetadataCatalog.get(dataset_name).thing_classes = ["thing"]
    coco = convert_to_coco_dict(dataset_name)
    (ann,) = coco["annotations"]
    assert ann["bbox"] == [1.0, 2.0, 3.0, 6.0]
    assert ann["area"] == pytest.approx(18.0)  # from the box when there is no mask
    assert ann["category_id"] == 0 and ann["iscrowd"] == 0 and ann["id"] == 1
    assert [im["id"] for im in coco["images"]] == [3, 4]

    out = tmp_path / "cached.json"
    out.write_text("{}")
    convert_to_coco_json(dataset_name, out)  # allow_cached: kept as is
    assert out.read_text() == "{}"
    convert_to_coco_json(dataset_name, out, allow_cached=False)
    assert json.loads(out.read_text())["annotations"][0]["bbox"] == [1.0, 2.0, 3.0, 6.0]


def test_load_sem_seg(shapes_dir: Path) -> None:
    gt_root, image_root = shapes_dir / "val" / "sem_seg", shapes_dir / "val" / "images"
    dicts = load_sem_seg(gt_root, image_root)
    stems = sorted(p.stem for p in image_root.glob("*.jpg"))
    assert len(dicts) == len(stems) == 60
    assert [d["file_name"] for d in dicts] == [str(image_root / (s + ".jpg")) for s in stems]
    assert [d["sem_seg_file_name"] for d in dicts] == [str(gt_root / (s + ".png")) for s in stems]


def test_load_sem_seg_intersection_and_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for stem in ("a", "b", "c"):
        (images / f"{stem}.jpg").write_bytes(b"")
    for stem in ("b", "c", "d"):
        (labels / f"{stem}.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        dicts = load_sem_seg(labels, images)
    assert [os.path.basename(d["file_name"]) for d in dicts] == ["b.jpg", "c.jpg"]
    assert [os.path.basename(d["sem_seg_file_name"]) for d in dicts] == ["b.png", "c.png"]
    assert "intersection of 2 files" in caplog.text

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No annotations"):
        load_sem_seg(empty, images)
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_sem_seg(tmp_path / "missing_dir", images)


def test_convert_round_trip_shapes_val(shapes_dir: Path, tmp_path: Path, dataset_name: str) -> None:
    root = shapes_dir / "val"
    register_coco_instances(dataset_name, {}, str(root / "instances.json"), str(root / "images"))
    out = tmp_path / "shapes_val_coco.json"
    convert_to_coco_json(dataset_name, out)
    raw = json.loads((root / "instances.json").read_text())
    converted = json.loads(out.read_text())
    assert converted["categories"] == [
        {"id": c["id"], "name": c["name"]} for c in raw["categories"]
    ]
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in converted["annotations"]] == [
        (a["image_id"], a["category_id"], a["bbox"])
        for a in sorted(raw["annotations"], key=lambda a: (a["image_id"], a["id"]))
    ]
    # polygon areas (shoelace) are below the pixel counts of the raster masks, by < 10%
    raw_area = {(a["image_id"], tuple(a["bbox"])): a["area"] for a in raw["annotations"]}
    for a in converted["annotations"]:
        assert 0.8 < a["area"] / raw_area[(a["image_id"], tuple(a["bbox"]))] < 1.0
    reloaded = load_coco_json(out, str(root / "images"))
    original = DatasetCatalog.get(dataset_name)
    assert [[x["bbox"] for x in d["annotations"]] for d in reloaded] == [
        [x["bbox"] for x in d["annotations"]] for d in original
    ]


def test_load_from_fsspec_path() -> None:
    fsspec = pytest.importorskip("fsspec")
    url = "memory://torchdet_test_coco/ann.json"
    with fsspec.open(url, "w") as f:
        json.dump(_tiny_coco(), f)
    try:
        dicts = load_coco_json(url, "imgs")
        assert [d["image_id"] for d in dicts] == [10, 20, 30]
    finally:
        fsspec.filesystem("memory").rm("/torchdet_test_coco", recursive=True)


def test_convert_rle_and_rotated_boxes(tmp_path: Path, dataset_name: str) -> None:
    yy, xx = np.mgrid[0:60, 0:50]
    d = np.hypot(xx - 25, yy - 30)
    donut = ((d > 8) & (d < 16)).astype(np.uint8)
    ys, xs = np.nonzero(donut)
    DatasetCatalog.register(
        dataset_name,
        lambda: [
            {
                "file_name": "t.jpg",
                "image_id": 0,
                "height": 60,
                "width": 50,
                "annotations": [
                    {
                        # numpy scalars, as produced from masks
                        "bbox": [xs.min(), ys.min(), xs.max(), ys.max()],
                        "bbox_mode": BoxMode.XYXY_ABS,
                        "category_id": 0,
                        "segmentation": mask_util.encode(np.asfortranarray(donut)),
                    },
                    {
                        "bbox": [10, 10, 4, 6, 30],
                        "bbox_mode": BoxMode.XYWHA_ABS,
                        "category_id": 0,
                    },
                ],
            }
        ],
    )
    MetadataCatalog.get(dataset_name).thing_classes = ["donut"]
    out = tmp_path / "donut.json"
    convert_to_coco_json(dataset_name, out)
    coco = json.loads(out.read_text())
    rle_ann, rot_ann = coco["annotations"]
    assert rle_ann["area"] == float(donut.sum())
    assert rle_ann["bbox"] == [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min()),
        float(ys.max() - ys.min()),
    ]
    assert rot_ann["bbox"] == [10.0, 10.0, 4.0, 6.0, 30.0] and rot_ann["area"] == 24.0
    (loaded,) = load_coco_json(out, "")
    assert np.array_equal(mask_util.decode(loaded["annotations"][0]["segmentation"]), donut)
    assert loaded["annotations"][1]["bbox_mode"] == BoxMode.XYWHA_ABS

"""Builtin registrations (present, lazy, right metadata) and the builtin metadata tables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import torchdet.data.datasets  # noqa: F401  (registers the builtin datasets)
from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets import builtin
from torchdet.data.datasets.builtin_meta import (
    ADE20K_SEM_SEG_CATEGORIES,
    CITYSCAPES_CATEGORIES,
    COCO_CATEGORIES,
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
    get_builtin_metadata,
)

EXPECTED_NAMES = (
    [f"coco_2014_{s}" for s in ("train", "val", "minival", "valminusminival")]
    + [f"coco_2017_{s}" for s in ("train", "val", "test", "test-dev", "val_100")]
    + [f"keypoints_coco_2014_{s}" for s in ("train", "val", "minival", "valminusminival")]
    + [f"keypoints_coco_2017_{s}" for s in ("train", "val", "val_100")]
    + [
        f"coco_2017_{s}_panoptic{v}"
        for s in ("train", "val", "val_100")
        for v in ("", "_separated", "_stuffonly")
    ]
    + [f"lvis_v1_{s}" for s in ("train", "val", "test_dev", "test_challenge")]
    + [f"lvis_v0.5_{s}" for s in ("train", "val", "val_rand_100", "test")]
    + ["lvis_v0.5_train_cocofied", "lvis_v0.5_val_cocofied"]
    + [
        f"cityscapes_fine_{t}_{s}"
        for t in ("instance_seg", "sem_seg")
        for s in ("train", "val", "test")
    ]
    + ["cityscapes_fine_panoptic_train", "cityscapes_fine_panoptic_val"]
    + [f"voc_2007_{s}" for s in ("trainval", "train", "val", "test")]
    + [f"voc_2012_{s}" for s in ("trainval", "train", "val")]
    + ["ade20k_sem_seg_train", "ade20k_sem_seg_val"]
)


def test_all_builtin_names_registered() -> None:
    assert len(EXPECTED_NAMES) == 52
    registered = set(DatasetCatalog.list())
    missing = [n for n in EXPECTED_NAMES if n not in registered]
    assert missing == []


def test_builtin_metadata_values() -> None:
    root = builtin._default_root()
    coco = MetadataCatalog.get("coco_2017_train")
    assert coco.json_file == os.path.join(root, "coco/annotations/instances_train2017.json")
    assert coco.image_root == os.path.join(root, "coco/train2017")
    assert coco.evaluator_type == "coco"
    assert len(coco.thing_classes) == 80 and coco.thing_classes[0] == "person"
    assert coco.thing_dataset_id_to_contiguous_id[90] == 79

    kpt = MetadataCatalog.get("keypoints_coco_2017_val")
    assert kpt.thing_classes == ["person"] and len(kpt.keypoint_names) == 17

    sep = MetadataCatalog.get("coco_2017_val_panoptic_separated")
    assert len(sep.stuff_classes) == 54 and sep.stuff_classes[0] == "things"
    assert sep.sem_seg_root == os.path.join(root, "coco/panoptic_stuff_val2017")
    assert sep.json_file == coco.json_file.replace("train", "val")
    std = MetadataCatalog.get("coco_2017_val_panoptic")
    assert (std.label_divisor, len(std.thing_classes), len(std.stuff_classes)) == (1000, 133, 133)
    assert MetadataCatalog.get("coco_2017_val_panoptic_stuffonly").evaluator_type == "sem_seg"

    assert MetadataCatalog.get("lvis_v1_val").evaluator_type == "lvis"
    assert MetadataCatalog.get("lvis_v1_val").json_file == os.path.join(
        root, "lvis/lvis_v1_val.json"
    )
    assert len(MetadataCatalog.get("lvis_v0.5_val_cocofied").thing_classes) == 80
    voc = MetadataCatalog.get("voc_2007_test")
    assert (voc.year, voc.split, voc.evaluator_type, len(voc.thing_classes)) == (
        2007,
        "test",
        "pascal_voc",
        20,
    )
    assert MetadataCatalog.get("voc_2012_val").year == 2012
    city = MetadataCatalog.get("cityscapes_fine_instance_seg_train")
    assert city.evaluator_type == "cityscapes_instance" and len(city.thing_classes) == 8
    assert MetadataCatalog.get("cityscapes_fine_sem_seg_val").ignore_label == 255
    assert MetadataCatalog.get(
        "cityscapes_fine_panoptic_val"
    ).thing_dataset_id_to_contiguous_id == {
        24: 11,
        25: 12,
        26: 13,
        27: 14,
        28: 15,
        31: 16,
        32: 17,
        33: 18,
    }
    ade = MetadataCatalog.get("ade20k_sem_seg_val")
    assert len(ade.stuff_classes) == 150 and ade.evaluator_type == "sem_seg"


def test_registration_does_not_touch_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(tmp_path / "no_such_root")
    touched: list[str] = []

    def record(path) -> None:
        if isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(root):
            touched.append(os.fspath(path))

    active = [True]

    def audit(event: str, args: tuple) -> None:
        if active[0] and event in ("open", "os.listdir", "os.scandir") and args:
            record(args[0])

    sys.addaudithook(audit)  # cannot be removed: `active` switches it off
    for fn in ("exists", "isfile", "isdir"):
        orig = getattr(os.path, fn)
        monkeypatch.setattr(os.path, fn, lambda p, _o=orig: (record(p), _o(p))[1])
    # fresh catalogs for the duration of the test
    monkeypatch.setattr(DatasetCatalog, "data", {})
    monkeypatch.setattr(MetadataCatalog, "data", {})
    try:
        builtin.register_all_builtin(root)
    finally:
        active[0] = False
    assert sorted(DatasetCatalog.list()) == sorted(EXPECTED_NAMES)
    assert touched == []
    assert not os.path.exists(root)
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        DatasetCatalog.get("coco_2017_val")  # the loader runs (and fails) only on get


def test_root_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHDET_DATASETS", "/data/sets")
    assert builtin._default_root() == "/data/sets"
    monkeypatch.delenv("TORCHDET_DATASETS")
    assert builtin._default_root() == "datasets"


def test_coco_categories_table() -> None:
    assert len(COCO_CATEGORIES) == 133
    ids = [c["id"] for c in COCO_CATEGORIES]
    assert ids == sorted(ids) and len(set(ids)) == 133
    things = [c for c in COCO_CATEGORIES if c["isthing"]]
    assert len(things) == 80 and things[-1]["id"] == 90 and things[-1]["name"] == "toothbrush"
    assert COCO_CATEGORIES[80] == {
        "color": [255, 255, 128],
        "isthing": 0,
        "id": 92,
        "name": "banner",
    }
    assert all(
        len(c["color"]) == 3 and all(0 <= v <= 255 for v in c["color"]) for c in COCO_CATEGORIES
    )
    assert ids[-1] == 200 and COCO_CATEGORIES[-1]["name"] == "rug-merged"


def test_builtin_metadata_dicts() -> None:
    meta = get_builtin_metadata("coco")
    assert meta["thing_dataset_id_to_contiguous_id"] == {
        c["id"]: i for i, c in enumerate(c for c in COCO_CATEGORIES if c["isthing"])
    }
    assert sorted(meta["thing_dataset_id_to_contiguous_id"].values()) == list(range(80))
    sep = get_builtin_metadata("coco_panoptic_separated")
    assert sep["stuff_dataset_id_to_contiguous_id"][0] == 0
    assert sep["stuff_dataset_id_to_contiguous_id"][92] == 1
    assert sep["stuff_dataset_id_to_contiguous_id"][200] == 53
    assert sep["stuff_classes"][-1] == "rug" and "sky" in sep["stuff_classes"]
    std = get_builtin_metadata("coco_panoptic_standard")
    assert std["stuff_dataset_id_to_contiguous_id"][92] == 80
    assert std["thing_dataset_id_to_contiguous_id"][1] == 0
    meta["thing_classes"].append("x")  # a fresh dict every call
    assert len(get_builtin_metadata("coco")["thing_classes"]) == 80
    with pytest.raises(KeyError, match="No built-in metadata"):
        get_builtin_metadata("imagenet")


def test_keypoint_tables() -> None:
    assert len(COCO_PERSON_KEYPOINT_NAMES) == 17 and COCO_PERSON_KEYPOINT_NAMES[0] == "nose"
    assert len(COCO_PERSON_KEYPOINT_FLIP_MAP) == 8
    for a, b in COCO_PERSON_KEYPOINT_FLIP_MAP:
        assert a.replace("left", "right") == b and a in COCO_PERSON_KEYPOINT_NAMES
    assert len(KEYPOINT_CONNECTION_RULES) == 14
    for a, b, color in KEYPOINT_CONNECTION_RULES:
        assert a in COCO_PERSON_KEYPOINT_NAMES and b in COCO_PERSON_KEYPOINT_NAMES
        assert len(color) == 3


def test_cityscapes_and_ade_tables() -> None:
    assert [c["trainId"] for c in CITYSCAPES_CATEGORIES] == list(range(19))
    assert [c["name"] for c in CITYSCAPES_CATEGORIES if c["isthing"]] == [
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    ]
    assert len(ADE20K_SEM_SEG_CATEGORIES) == 150
    assert ADE20K_SEM_SEG_CATEGORIES[:3] == ["wall", "building", "sky"]
    assert ADE20K_SEM_SEG_CATEGORIES[-1] == "flag"


_IMPORT_PROBE = """
import os, sys
root = os.environ["TORCHDET_DATASETS"]
touched = []
def record(p):
    if isinstance(p, (str, os.PathLike)) and os.fspath(p).startswith(root):
        touched.append(os.fspath(p))
def audit(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args:
        record(args[0])
sys.addaudithook(audit)
for fn in ("exists", "isfile", "isdir"):
    orig = getattr(os.path, fn)
    setattr(os.path, fn, lambda p, _o=orig: (record(p), _o(p))[1])
from torchdet.data import DatasetCatalog, MetadataCatalog
print(len(DatasetCatalog.list()), MetadataCatalog.get("coco_2017_val").json_file, touched)
"""


def test_import_registers_without_disk_access(tmp_path: Path) -> None:
    import subprocess

    root = str(tmp_path / "absent_root")
    env = dict(os.environ, TORCHDET_DATASETS=root)
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    assert out.returncode == 0, out.stderr
    count, json_file, touched = out.stdout.strip().split(" ", 2)
    assert int(count) >= 52
    assert json_file == os.path.join(root, "coco/annotations/instances_val2017.json")
    assert touched == "[]"

"""Registration of the builtin datasets (COCO, LVIS, Pascal VOC, Cityscapes, ADE20K).

Every dataset is registered under ``$TORCHDET_DATASETS`` (default ``./datasets``) with the folder
layout Detectron2 documents in ``datasets/README.md``, e.g.::

    coco/{train,val}2017/  coco/annotations/instances_{train,val}2017.json
    coco/panoptic_{train,val}2017/  coco/panoptic_stuff_{train,val}2017/
    lvis/lvis_v1_{train,val}.json   VOC2007/{Annotations,ImageSets,JPEGImages}/
    cityscapes/{leftImg8bit,gtFine}/  ADEChallengeData2016/{images,annotations_detectron2}/

Registering is lazy: nothing here reads the disk; the files are opened by
``DatasetCatalog.get(name)``. Running this module registers everything once (on import of
``torchdet.data.datasets``).
"""

from __future__ import annotations

import os

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES, get_builtin_metadata
from torchdet.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from torchdet.data.datasets.cityscapes_panoptic import register_all_cityscapes_panoptic
from torchdet.data.datasets.coco import load_sem_seg, register_coco_instances
from torchdet.data.datasets.coco_panoptic import (
    register_coco_panoptic,
    register_coco_panoptic_separated,
)
from torchdet.data.datasets.lvis import get_lvis_instances_meta, register_lvis_instances
from torchdet.data.datasets.pascal_voc import register_pascal_voc

__all__ = [
    "register_all_coco",
    "register_all_lvis",
    "register_all_cityscapes",
    "register_all_pascal_voc",
    "register_all_ade20k",
    "register_all_builtin",
]

# ==== Predefined datasets and splits for COCO ==========
_PREDEFINED_SPLITS_COCO: dict[str, dict[str, tuple[str, str]]] = {}
_PREDEFINED_SPLITS_COCO["coco"] = {
    "coco_2014_train": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": ("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": (
        "coco/val2014",
        "coco/annotations/instances_valminusminival2014.json",
    ),
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2017_test": ("coco/test2017", "coco/annotations/image_info_test2017.json"),
    "coco_2017_test-dev": ("coco/test2017", "coco/annotations/image_info_test-dev2017.json"),
    "coco_2017_val_100": ("coco/val2017", "coco/annotations/instances_val2017_100.json"),
}
_PREDEFINED_SPLITS_COCO["coco_person"] = {
    "keypoints_coco_2014_train": (
        "coco/train2014",
        "coco/annotations/person_keypoints_train2014.json",
    ),
    "keypoints_coco_2014_val": ("coco/val2014", "coco/annotations/person_keypoints_val2014.json"),
    "keypoints_coco_2014_minival": (
        "coco/val2014",
        "coco/annotations/person_keypoints_minival2014.json",
    ),
    "keypoints_coco_2014_valminusminival": (
        "coco/val2014",
        "coco/annotations/person_keypoints_valminusminival2014.json",
    ),
    "keypoints_coco_2017_train": (
        "coco/train2017",
        "coco/annotations/person_keypoints_train2017.json",
    ),
    "keypoints_coco_2017_val": ("coco/val2017", "coco/annotations/person_keypoints_val2017.json"),
    "keypoints_coco_2017_val_100": (
        "coco/val2017",
        "coco/annotations/person_keypoints_val2017_100.json",
    ),
}

# prefix: (panoptic root, panoptic json, semantic root of the "separated" labels)
_PREDEFINED_SPLITS_COCO_PANOPTIC = {
    "coco_2017_train_panoptic": (
        "coco/panoptic_train2017",
        "coco/annotations/panoptic_train2017.json",
        "coco/panoptic_stuff_train2017",
    ),
    "coco_2017_val_panoptic": (
        "coco/panoptic_val2017",
        "coco/annotations/panoptic_val2017.json",
        "coco/panoptic_stuff_val2017",
    ),
    "coco_2017_val_100_panoptic": (
        "coco/panoptic_val2017_100",
        "coco/annotations/panoptic_val2017_100.json",
        "coco/panoptic_stuff_val2017_100",
    ),
}


def _join(root: str, path: str) -> str:
    return path if "://" in path else os.path.join(root, path)


def register_all_coco(root: str) -> None:
    """COCO instances, person keypoints and panoptic (standard, separated, stuff-only)."""
    for dataset_name, splits_per_dataset in _PREDEFINED_SPLITS_COCO.items():
        for key, (image_root, json_file) in splits_per_dataset.items():
            register_coco_instances(
                key,
                get_builtin_metadata(dataset_name),
                _join(root, json_file),
                _join(root, image_root),
            )

    for prefix, (
        panoptic_root,
        panoptic_json,
        semantic_root,
    ) in _PREDEFINED_SPLITS_COCO_PANOPTIC.items():
        prefix_instances = prefix[: -len("_panoptic")]
        instances_meta = MetadataCatalog.get(prefix_instances)
        image_root, instances_json = instances_meta.image_root, instances_meta.json_file
        # "separated": instances from the instances json + semantic labels of PanopticFPN
        register_coco_panoptic_separated(
            prefix,
            get_builtin_metadata("coco_panoptic_separated"),
            image_root,
            _join(root, panoptic_root),
            _join(root, panoptic_json),
            _join(root, semantic_root),
            instances_json,
        )
        # "standard": the panoptic PNGs with segments_info, 133 classes
        register_coco_panoptic(
            prefix,
            get_builtin_metadata("coco_panoptic_standard"),
            image_root,
            _join(root, panoptic_root),
            _join(root, panoptic_json),
            instances_json,
        )


# ==== Predefined datasets and splits for LVIS ==========
_PREDEFINED_SPLITS_LVIS = {
    "lvis_v1": {
        "lvis_v1_train": ("coco/", "lvis/lvis_v1_train.json"),
        "lvis_v1_val": ("coco/", "lvis/lvis_v1_val.json"),
        "lvis_v1_test_dev": ("coco/", "lvis/lvis_v1_image_info_test_dev.json"),
        "lvis_v1_test_challenge": ("coco/", "lvis/lvis_v1_image_info_test_challenge.json"),
    },
    "lvis_v0.5": {
        "lvis_v0.5_train": ("coco/", "lvis/lvis_v0.5_train.json"),
        "lvis_v0.5_val": ("coco/", "lvis/lvis_v0.5_val.json"),
        "lvis_v0.5_val_rand_100": ("coco/", "lvis/lvis_v0.5_val_rand_100.json"),
        "lvis_v0.5_test": ("coco/", "lvis/lvis_v0.5_image_info_test.json"),
    },
    "lvis_v0.5_cocofied": {
        "lvis_v0.5_train_cocofied": ("coco/", "lvis/lvis_v0.5_train_cocofied.json"),
        "lvis_v0.5_val_cocofied": ("coco/", "lvis/lvis_v0.5_val_cocofied.json"),
    },
}


def register_all_lvis(root: str) -> None:
    """LVIS v1, v0.5 and the "cocofied" v0.5 (LVIS images with COCO's 80 classes)."""
    for dataset_name, splits_per_dataset in _PREDEFINED_SPLITS_LVIS.items():
        for key, (image_root, json_file) in splits_per_dataset.items():
            register_lvis_instances(
                key,
                get_lvis_instances_meta(dataset_name),
                _join(root, json_file),
                _join(root, image_root),
            )


# ==== Predefined splits for raw cityscapes images ===========
_RAW_CITYSCAPES_SPLITS = {
    "cityscapes_fine_{task}_train": ("cityscapes/leftImg8bit/train/", "cityscapes/gtFine/train/"),
    "cityscapes_fine_{task}_val": ("cityscapes/leftImg8bit/val/", "cityscapes/gtFine/val/"),
    "cityscapes_fine_{task}_test": ("cityscapes/leftImg8bit/test/", "cityscapes/gtFine/test/"),
}


def register_all_cityscapes(root: str) -> None:
    """Cityscapes fine instance segmentation and semantic segmentation (train/val/test)."""
    for key, (image_dir, gt_dir) in _RAW_CITYSCAPES_SPLITS.items():
        meta = get_builtin_metadata("cityscapes")
        image_dir = os.path.join(root, image_dir)
        gt_dir = os.path.join(root, gt_dir)

        inst_key = key.format(task="instance_seg")
        DatasetCatalog.register(
            inst_key,
            lambda x=image_dir, y=gt_dir: load_cityscapes_instances(
                x, y, from_json=True, to_polygons=True
            ),
        )
        MetadataCatalog.get(inst_key).set(
            image_dir=image_dir, gt_dir=gt_dir, evaluator_type="cityscapes_instance", **meta
        )

        sem_key = key.format(task="sem_seg")
        DatasetCatalog.register(
            sem_key, lambda x=image_dir, y=gt_dir: load_cityscapes_semantic(x, y)
        )
        MetadataCatalog.get(sem_key).set(
            image_dir=image_dir,
            gt_dir=gt_dir,
            evaluator_type="cityscapes_sem_seg",
            ignore_label=255,
            **meta,
        )


# ==== Predefined splits for PASCAL VOC ===========
_PASCAL_VOC_SPLITS = [
    ("voc_2007_trainval", "VOC2007", "trainval"),
    ("voc_2007_train", "VOC2007", "train"),
    ("voc_2007_val", "VOC2007", "val"),
    ("voc_2007_test", "VOC2007", "test"),
    ("voc_2012_trainval", "VOC2012", "trainval"),
    ("voc_2012_train", "VOC2012", "train"),
    ("voc_2012_val", "VOC2012", "val"),
]


def register_all_pascal_voc(root: str) -> None:
    """Pascal VOC 2007 and 2012 detection splits (20 classes)."""
    for name, dirname, split in _PASCAL_VOC_SPLITS:
        year = 2007 if "2007" in name else 2012
        register_pascal_voc(name, os.path.join(root, dirname), split, year)
        MetadataCatalog.get(name).evaluator_type = "pascal_voc"


def register_all_ade20k(root: str) -> None:
    """ADE20K SceneParsing semantic segmentation (150 classes, labels prepared with Detectron2's
    ``prepare_ade20k_sem_seg.py``: label - 1, 0 -> 255)."""
    root = os.path.join(root, "ADEChallengeData2016")
    for name, dirname in [("train", "training"), ("val", "validation")]:
        image_dir = os.path.join(root, "images", dirname)
        gt_dir = os.path.join(root, "annotations_detectron2", dirname)
        name = f"ade20k_sem_seg_{name}"
        DatasetCatalog.register(
            name, lambda x=image_dir, y=gt_dir: load_sem_seg(y, x, gt_ext="png", image_ext="jpg")
        )
        MetadataCatalog.get(name).set(
            stuff_classes=ADE20K_SEM_SEG_CATEGORIES[:],
            image_root=image_dir,
            sem_seg_root=gt_dir,
            evaluator_type="sem_seg",
            ignore_label=255,
        )


def register_all_builtin(root: str) -> None:
    """Register every builtin dataset under ``root`` (the names must not be registered yet)."""
    register_all_coco(root)
    register_all_lvis(root)
    register_all_cityscapes(root)
    register_all_cityscapes_panoptic(root)
    register_all_pascal_voc(root)
    register_all_ade20k(root)


def _default_root() -> str:
    return os.path.expanduser(os.getenv("TORCHDET_DATASETS", "datasets"))


# Register everything once, when this module is imported (by torchdet.data.datasets); a user who
# wants another root can remove the names or register their own.
if "coco_2017_train" not in DatasetCatalog.list():
    register_all_builtin(_default_root())

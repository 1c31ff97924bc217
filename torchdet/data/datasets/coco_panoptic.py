"""COCO panoptic segmentation: PNG + ``segments_info`` datasets, standard and "separated".

The standard form (``register_coco_panoptic``) yields ``pan_seg_file_name`` + ``segments_info``
per image, used by Panoptic-DeepLab style models. The "separated" form
(``register_coco_panoptic_separated``) is what Panoptic FPN trains on: COCO instances from the
instances json merged with a semantic PNG whose labels are 0 for all things and 1.. for stuff.
"""

from __future__ import annotations

import copy
import logging
import os

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.coco import _read_json, load_coco_json, load_sem_seg

__all__ = [
    "register_coco_panoptic",
    "register_coco_panoptic_separated",
    "load_coco_panoptic_json",
    "merge_to_panoptic",
]

logger = logging.getLogger(__name__)


def load_coco_panoptic_json(
    json_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    meta: dict,
) -> list[dict]:
    """Load a COCO panoptic json.

    Args:
        json_file: path to the panoptic json, e.g. "~/coco/annotations/panoptic_train2017.json".
        image_dir: the directory where the images are, e.g. "~/coco/train2017".
        gt_dir: the directory where the panoptic PNGs are, e.g. "~/coco/panoptic_train2017".
        meta: dict with ``thing_dataset_id_to_contiguous_id`` and
            ``stuff_dataset_id_to_contiguous_id``.

    Returns:
        One dict per annotated image, in the json's order, with ``file_name`` (the image: the
        json's ``images`` entry of the same id, else the PNG's stem + ".jpg" like COCO),
        ``image_id``, ``pan_seg_file_name`` and ``segments_info``; each segment keeps its ``id``,
        ``iscrowd``, ``bbox``, ``area``, gets a contiguous ``category_id`` and ``isthing``.

    Raises:
        FileNotFoundError: the json, or the first image / PNG, is missing.
        ValueError: the json has no annotations.
        KeyError: a segment's category is in neither id map.
    """
    json_file = os.fspath(json_file)
    image_dir, gt_dir = os.fspath(image_dir), os.fspath(gt_dir)
    json_info = _read_json(json_file)
    if not isinstance(json_info, dict) or not json_info.get("annotations"):
        raise ValueError(f"Panoptic annotation file '{json_file}' has no 'annotations'")
    thing_map = meta["thing_dataset_id_to_contiguous_id"]
    stuff_map = meta["stuff_dataset_id_to_contiguous_id"]
    image_files = {img["id"]: img["file_name"] for img in json_info.get("images", [])}

    ret = []
    for ann in json_info["annotations"]:
        image_id = int(ann["image_id"])
        image_name = image_files.get(ann["image_id"])
        if image_name is None:
            # COCO's own convention: the image is the PNG's stem with a ".jpg" extension
            image_name = os.path.splitext(ann["file_name"])[0] + ".jpg"
        segments_info = []
        for seg in ann["segments_info"]:
            seg = dict(seg)
            cid = seg["category_id"]
            if cid in thing_map:
                seg["category_id"] = thing_map[cid]
                seg["isthing"] = True
            elif cid in stuff_map:
                seg["category_id"] = stuff_map[cid]
                seg["isthing"] = False
            else:
                raise KeyError(
                    f"'{json_file}': segment id {seg.get('id')} of image id {image_id} has "
                    f"category_id={cid}, which is in neither thing_dataset_id_to_contiguous_id "
                    f"({sorted(thing_map)}) nor stuff_dataset_id_to_contiguous_id "
                    f"({sorted(stuff_map)})"
                )
            segments_info.append(seg)
        ret.append(
            {
                "file_name": os.path.join(image_dir, image_name),
                "image_id": image_id,
                "pan_seg_file_name": os.path.join(gt_dir, ann["file_name"]),
                "segments_info": segments_info,
            }
        )
    # check one pair only: stat'ing every file of a large dataset is slow on network filesystems
    for key in ("file_name", "pan_seg_file_name"):
        if not os.path.isfile(ret[0][key]):
            raise FileNotFoundError(
                f"'{json_file}': {key} of image id {ret[0]['image_id']} does not exist: "
                f"{ret[0][key]}"
            )
    return ret


def register_coco_panoptic(
    name: str,
    metadata: dict,
    image_root: str | os.PathLike,
    panoptic_root: str | os.PathLike,
    panoptic_json: str | os.PathLike,
    instances_json: str | os.PathLike | None = None,
) -> None:
    """Register a "standard" version of COCO panoptic segmentation dataset named ``name``.

    The dictionaries in this registered dataset follows detectron2's standard format. Hence it's
    called "standard".

    Args:
        name: the name that identifies a dataset, e.g. "coco_2017_train_panoptic".
        metadata: extra metadata associated with this dataset; must contain
            ``thing_dataset_id_to_contiguous_id`` and ``stuff_dataset_id_to_contiguous_id``.
        image_root: directory which contains all the images.
        panoptic_root: directory which contains panoptic annotation images in COCO format.
        panoptic_json: path to the json panoptic annotation file in COCO format.
        instances_json: path to the json instance annotation file (for the COCO evaluator).
    """
    for key in ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id"):
        if key not in metadata:
            raise KeyError(f"register_coco_panoptic('{name}'): metadata needs '{key}'")
    DatasetCatalog.register(
        name,
        lambda: load_coco_panoptic_json(panoptic_json, image_root, panoptic_root, metadata),
    )
    MetadataCatalog.get(name).set(
        panoptic_root=panoptic_root,
        image_root=image_root,
        panoptic_json=panoptic_json,
        json_file=instances_json,
        evaluator_type="coco_panoptic_seg",
        ignore_label=255,
        label_divisor=1000,
        **metadata,
    )


def register_coco_panoptic_separated(
    name: str,
    metadata: dict,
    image_root: str | os.PathLike,
    panoptic_root: str | os.PathLike,
    panoptic_json: str | os.PathLike,
    sem_seg_root: str | os.PathLike,
    instances_json: str | os.PathLike,
) -> None:
    """Register a "separated" version of COCO panoptic segmentation dataset.

    The annotations in this registered dataset will contain both instance annotations and
    semantic annotations, each with its own contiguous ids. Hence it's called "separated". It
    follows the setting used by the PanopticFPN paper:

    1. The instance annotations directly come from polygons in the COCO instances annotation
       task, rather than from the masks in the COCO panoptic annotations.
    2. The semantic annotations are converted from panoptic annotations, where all "things" are
       assigned a semantic id of 0. All semantic categories will therefore have ids in
       contiguous range [1, #stuff_categories].

    This function will also register a pure semantic segmentation dataset named
    ``name + '_stuffonly'``.

    Args:
        name: the name prefix; registers ``<name>_separated`` and ``<name>_stuffonly``.
        metadata: extra metadata associated with this dataset.
        image_root: directory which contains all the images.
        panoptic_root: directory which contains panoptic annotation images.
        panoptic_json: path to the json panoptic annotation file.
        sem_seg_root: directory which contains all the ground truth segmentation annotations.
        instances_json: path to the json instance annotation file.
    """
    panoptic_name = name + "_separated"
    DatasetCatalog.register(
        panoptic_name,
        lambda: merge_to_panoptic(
            load_coco_json(instances_json, image_root, panoptic_name),
            load_sem_seg(sem_seg_root, image_root),
        ),
    )
    MetadataCatalog.get(panoptic_name).set(
        panoptic_root=panoptic_root,
        image_root=image_root,
        panoptic_json=panoptic_json,
        sem_seg_root=sem_seg_root,
        json_file=instances_json,
        evaluator_type="coco_panoptic_seg",
        ignore_label=255,
        **metadata,
    )

    semantic_name = name + "_stuffonly"
    DatasetCatalog.register(semantic_name, lambda: load_sem_seg(sem_seg_root, image_root))
    MetadataCatalog.get(semantic_name).set(
        sem_seg_root=sem_seg_root,
        image_root=image_root,
        evaluator_type="sem_seg",
        ignore_label=255,
        **metadata,
    )


def merge_to_panoptic(detection_dicts: list[dict], sem_seg_dicts: list[dict]) -> list[dict]:
    """Create dataset dicts for panoptic segmentation, by merging two dicts using "file_name"
    field to match their entries.

    Args:
        detection_dicts: lists of dicts for object detection or instance segmentation.
        sem_seg_dicts: lists of dicts for semantic segmentation.

    Returns:
        One shallow copy of each detection dict updated with its semantic dict's keys.

    Raises:
        ValueError: ``sem_seg_dicts`` is empty.
        KeyError: an image of ``detection_dicts`` has no semantic segmentation entry.
    """
    sem_seg_file_to_entry = {x["file_name"]: x for x in sem_seg_dicts}
    if not sem_seg_file_to_entry:
        raise ValueError("merge_to_panoptic: no semantic segmentation entries to merge")
    results = []
    for det_dict in detection_dicts:
        dic = copy.copy(det_dict)
        try:
            dic.update(sem_seg_file_to_entry[dic["file_name"]])
        except KeyError as e:
            raise KeyError(
                f"merge_to_panoptic: image {dic['file_name']} (image id {dic.get('image_id')}) "
                "has no semantic segmentation file"
            ) from e
        results.append(dic)
    return results

"""Cityscapes panoptic segmentation in COCO panoptic format.

The panoptic PNGs and json are made by ``cityscapesscripts``' ``createPanopticImgs.py``
(``gtFine/cityscapes_panoptic_<split>/`` + ``gtFine/cityscapes_panoptic_<split>.json``); the
semantic labels (``*_labelTrainIds.png``) by ``createTrainIdLabelImgs.py``.
"""

from __future__ import annotations

import logging
import os

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
from torchdet.data.datasets.coco import _read_json

__all__ = ["load_cityscapes_panoptic", "register_all_cityscapes_panoptic"]

logger = logging.getLogger(__name__)

_PREPARE_HINT = (
    "pip install cityscapesscripts, then run cityscapesscripts/preparation/createPanopticImgs.py "
    "(and createTrainIdLabelImgs.py for the semantic labels)"
)


def _get_cityscapes_panoptic_files(
    image_dir: str, gt_dir: str, json_info: dict
) -> list[tuple[str, str, list[dict]]]:
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"Cityscapes image directory '{image_dir}' does not exist")
    suffix = "_leftImg8bit.png"
    image_dict = {}
    for city in sorted(os.listdir(image_dir)):
        city_img_dir = os.path.join(image_dir, city)
        for basename in sorted(os.listdir(city_img_dir)):
            if not basename.endswith(suffix):
                raise ValueError(f"Unexpected file '{basename}' in {city_img_dir}")
            image_dict[basename[: -len(suffix)]] = os.path.join(city_img_dir, basename)
    files = []
    for ann in json_info["annotations"]:
        image_file = image_dict.get(ann["image_id"])
        if image_file is None:
            raise FileNotFoundError(
                f"No image {ann['image_id']} found in {image_dir} for annotation {ann['file_name']}"
            )
        files.append((image_file, os.path.join(gt_dir, ann["file_name"]), ann["segments_info"]))
    if not files:
        raise ValueError(f"No images found in {image_dir}")
    return files


def load_cityscapes_panoptic(
    image_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    gt_json: str | os.PathLike,
    meta: dict,
) -> list[dict]:
    """Load Cityscapes panoptic annotations.

    Args:
        image_dir: path to the raw dataset, e.g. "~/cityscapes/leftImg8bit/train".
        gt_dir: path to the panoptic PNGs, e.g. "~/cityscapes/gtFine/cityscapes_panoptic_train".
        gt_json: path to the panoptic json, e.g.
            "~/cityscapes/gtFine/cityscapes_panoptic_train.json".
        meta: dict with "thing_dataset_id_to_contiguous_id" and
            "stuff_dataset_id_to_contiguous_id".

    Returns:
        dicts with ``file_name``, ``image_id`` (e.g. "frankfurt_000000_000294"),
        ``sem_seg_file_name``, ``pan_seg_file_name`` and ``segments_info`` (contiguous ids).
    """
    gt_json = os.fspath(gt_json)
    if not os.path.exists(gt_json):
        raise FileNotFoundError(f"Cityscapes panoptic json '{gt_json}' is missing: {_PREPARE_HINT}")
    json_info = _read_json(gt_json)
    files = _get_cityscapes_panoptic_files(os.fspath(image_dir), os.fspath(gt_dir), json_info)
    thing_map = meta["thing_dataset_id_to_contiguous_id"]
    stuff_map = meta["stuff_dataset_id_to_contiguous_id"]
    ret = []
    for image_file, label_file, segments_info in files:
        sem_label_file = (
            image_file.replace("leftImg8bit", "gtFine").split(".")[0] + "_labelTrainIds.png"
        )
        segs = []
        for seg in segments_info:
            seg = dict(seg)
            cid = seg["category_id"]
            if cid in thing_map:
                seg["category_id"] = thing_map[cid]
            elif cid in stuff_map:
                seg["category_id"] = stuff_map[cid]
            else:
                raise KeyError(
                    f"'{gt_json}': segment {seg.get('id')} of {label_file} has unknown "
                    f"category_id={cid}"
                )
            segs.append(seg)
        ret.append(
            {
                "file_name": image_file,
                "image_id": "_".join(
                    os.path.splitext(os.path.basename(image_file))[0].split("_")[:3]
                ),
                "sem_seg_file_name": sem_label_file,
                "pan_seg_file_name": label_file,
                "segments_info": segs,
            }
        )
    for key in ("sem_seg_file_name", "pan_seg_file_name"):
        if not os.path.isfile(ret[0][key]):
            raise FileNotFoundError(f"{ret[0][key]} does not exist: {_PREPARE_HINT}")
    return ret


_RAW_CITYSCAPES_PANOPTIC_SPLITS = {
    "cityscapes_fine_panoptic_train": (
        "cityscapes/leftImg8bit/train",
        "cityscapes/gtFine/cityscapes_panoptic_train",
        "cityscapes/gtFine/cityscapes_panoptic_train.json",
    ),
    "cityscapes_fine_panoptic_val": (
        "cityscapes/leftImg8bit/val",
        "cityscapes/gtFine/cityscapes_panoptic_val",
        "cityscapes/gtFine/cityscapes_panoptic_val.json",
    ),
    # "cityscapes_fine_panoptic_test": not supported yet
}


def register_all_cityscapes_panoptic(root: str) -> None:
    """Register ``cityscapes_fine_panoptic_{train,val}`` under ``root`` (lazily)."""
    names = [k["name"] for k in CITYSCAPES_CATEGORIES]
    colors = [k["color"] for k in CITYSCAPES_CATEGORIES]
    meta = {
        # one contiguous space (train ids 0..18) under both thing_* and stuff_*
        "thing_classes": names,
        "thing_colors": colors,
        "stuff_classes": list(names),
        "stuff_colors": list(colors),
        "thing_dataset_id_to_contiguous_id": {
            k["id"]: k["trainId"] for k in CITYSCAPES_CATEGORIES if k["isthing"] == 1
        },
        "stuff_dataset_id_to_contiguous_id": {
            k["id"]: k["trainId"] for k in CITYSCAPES_CATEGORIES if k["isthing"] == 0
        },
    }
    for key, (image_dir, gt_dir, gt_json) in _RAW_CITYSCAPES_PANOPTIC_SPLITS.items():
        image_dir = os.path.join(root, image_dir)
        gt_dir = os.path.join(root, gt_dir)
        gt_json = os.path.join(root, gt_json)
        DatasetCatalog.register(
            key, lambda x=image_dir, y=gt_dir, z=gt_json: load_cityscapes_panoptic(x, y, z, meta)
        )
        MetadataCatalog.get(key).set(
            panoptic_root=gt_dir,
            image_root=image_dir,
            panoptic_json=gt_json,
            gt_dir=gt_dir.replace("cityscapes_panoptic_", ""),
            evaluator_type="cityscapes_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )

"""Cityscapes fine annotations: instance segmentation and semantic segmentation.

Folder layout: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` and
``gtFine/<split>/<city>/<stem>_gtFine_{polygons.json, instanceIds.png, labelIds.png,
labelTrainIds.png}``. The Cityscapes label table is built in, so ``cityscapesscripts`` is not
needed to load; it is only needed to *prepare* ``*_labelTrainIds.png`` (semantic training labels,
``pip install cityscapesscripts`` then ``createTrainIdLabelImgs.py``).

Instances from the polygon json (``from_json=True``) are drawn in file order, each polygon
overwriting earlier ones, as ``cityscapesscripts``' ``json2instanceImg`` does, and each visible
region is then traced back to polygons with OpenCV, which is exactly what the ``instanceIds.png``
path does (Detectron2 resolves the overlaps with shapely instead; boundaries can differ by a
fraction of a pixel).
"""

from __future__ import annotations

import json
import logging
import os
from typing import NamedTuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from torchdet.structures import BoxMode

__all__ = ["load_cityscapes_instances", "load_cityscapes_semantic", "CITYSCAPES_LABELS"]

logger = logging.getLogger(__name__)


class CityscapesLabel(NamedTuple):
    name: str
    id: int
    train_id: int
    has_instances: bool
    ignore_in_eval: bool


# name, id, trainId, hasInstances, ignoreInEval (cityscapesscripts/helpers/labels.py)
# fmt: off
CITYSCAPES_LABELS = [CityscapesLabel(*x) for x in [
    ("unlabeled", 0, 255, False, True), ("ego vehicle", 1, 255, False, True),
    ("rectification border", 2, 255, False, True), ("out of roi", 3, 255, False, True),
    ("static", 4, 255, False, True), ("dynamic", 5, 255, False, True),
    ("ground", 6, 255, False, True), ("road", 7, 0, False, False),
    ("sidewalk", 8, 1, False, False), ("parking", 9, 255, False, True),
    ("rail track", 10, 255, False, True), ("building", 11, 2, False, False),
    ("wall", 12, 3, False, False), ("fence", 13, 4, False, False),
    ("guard rail", 14, 255, False, True), ("bridge", 15, 255, False, True),
    ("tunnel", 16, 255, False, True), ("pole", 17, 5, False, False),
    ("polegroup", 18, 255, False, True), ("traffic light", 19, 6, False, False),
    ("traffic sign", 20, 7, False, False), ("vegetation", 21, 8, False, False),
    ("terrain", 22, 9, False, False), ("sky", 23, 10, False, False),
    ("person", 24, 11, True, False), ("rider", 25, 12, True, False),
    ("car", 26, 13, True, False), ("truck", 27, 14, True, False),
    ("bus", 28, 15, True, False), ("caravan", 29, 255, True, True),
    ("trailer", 30, 255, True, True), ("train", 31, 16, True, False),
    ("motorcycle", 32, 17, True, False), ("bicycle", 33, 18, True, False),
    ("license plate", -1, -1, False, True),
]]
# fmt: on
_NAME2LABEL = {label.name: label for label in CITYSCAPES_LABELS}
_ID2LABEL = {label.id: label for label in CITYSCAPES_LABELS}
# the 8 evaluated instance classes -> contiguous ids 0..7
_INSTANCE_ID_TO_CONTIGUOUS = {
    label.id: i
    for i, label in enumerate(
        lbl for lbl in CITYSCAPES_LABELS if lbl.has_instances and not lbl.ignore_in_eval
    )
}


def _get_cityscapes_files(image_dir: str, gt_dir: str) -> list[tuple[str, str, str, str]]:
    """(image, instanceIds png, labelIds png, polygons json) per image, sorted."""
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"Cityscapes image directory '{image_dir}' does not exist")
    files = []
    suffix = "leftImg8bit.png"
    for city in sorted(os.listdir(image_dir)):
        city_img_dir = os.path.join(image_dir, city)
        city_gt_dir = os.path.join(gt_dir, city)
        for basename in sorted(os.listdir(city_img_dir)):
            if not basename.endswith(suffix):
                raise ValueError(
                    f"Unexpected file '{os.path.join(city_img_dir, basename)}' in Cityscapes "
                    f"images (expected *_{suffix})"
                )
            stem = basename[: -len(suffix)]
            files.append(
                (
                    os.path.join(city_img_dir, basename),
                    os.path.join(city_gt_dir, stem + "gtFine_instanceIds.png"),
                    os.path.join(city_gt_dir, stem + "gtFine_labelIds.png"),
                    os.path.join(city_gt_dir, stem + "gtFine_polygons.json"),
                )
            )
    if not files:
        raise ValueError(f"No images found in {image_dir}")
    return files


def _instance_image_from_json(json_file: str) -> tuple[np.ndarray, dict]:
    """Rasterise a ``*_polygons.json`` into an instanceIds-style map (label id * 1000 + k for
    instances, the label id for stuff and crowd "group" regions)."""
    with open(json_file) as f:
        obj = json.load(f)
    h, w = obj["imgHeight"], obj["imgWidth"]
    inst = np.zeros((h, w), np.int32)
    next_index: dict[int, int] = {}
    for o in obj["objects"]:
        if "deleted" in o:  # cityscapes data format specific
            continue
        name = o["label"]
        label = _NAME2LABEL.get(name)
        if label is None and name.endswith("group"):  # crowd region
            label = _NAME2LABEL.get(name[: -len("group")])
        if label is None:
            raise KeyError(f"'{json_file}': unknown Cityscapes label '{name}'")
        if label.id < 0:
            continue
        value = label.id
        if label.has_instances and not name.endswith("group"):
            k = next_index.get(label.id, 0)
            next_index[label.id] = k + 1
            value = label.id * 1000 + k
        pts = np.asarray(o["polygon"], dtype=np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(inst, [pts], int(value))
    return inst, obj


def _instances_from_id_image(inst_image: np.ndarray, to_polygons: bool) -> list[dict]:
    annos = []
    # ids < 24 are stuff labels (filtering them first is faster)
    for instance_id in np.unique(inst_image[inst_image >= 24]).tolist():
        # non-crowd: label * 1000 + k; crowd regions carry the bare label id (< 1000)
        label_id = instance_id // 1000 if instance_id >= 1000 else instance_id
        label = _ID2LABEL.get(label_id)
        if label is None or not label.has_instances or label.ignore_in_eval:
            continue
        mask = np.asarray(inst_image == instance_id, dtype=np.uint8, order="F")
        ys, xs = np.nonzero(mask)
        xmin, xmax, ymin, ymax = xs.min(), xs.max(), ys.min(), ys.max()
        if xmax <= xmin or ymax <= ymin:
            continue
        anno = {
            "iscrowd": instance_id < 1000,
            "category_id": _INSTANCE_ID_TO_CONTIGUOUS[label.id],
            "bbox": (float(xmin), float(ymin), float(xmax), float(ymax)),
            "bbox_mode": BoxMode.XYXY_ABS,
        }
        if to_polygons:
            contours = cv2.findContours(mask.copy(), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[-2]
            polygons = [c.reshape(-1).tolist() for c in contours if len(c) >= 3]
            if not polygons:  # OpenCV can produce degenerate contours
                continue
            anno["segmentation"] = polygons
        else:
            rle = mask_util.encode(mask[:, :, None])[0]
            rle["counts"] = rle["counts"].decode("ascii")
            anno["segmentation"] = rle
        annos.append(anno)
    return annos


def load_cityscapes_instances(
    image_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    from_json: bool = True,
    to_polygons: bool = True,
) -> list[dict]:
    """Load Cityscapes instance annotations.

    Args:
        image_dir: path to the raw dataset, e.g. "~/cityscapes/leftImg8bit/train".
        gt_dir: path to the raw annotations, e.g. "~/cityscapes/gtFine/train".
        from_json: read the ``*_polygons.json`` files (else ``*_instanceIds.png``).
        to_polygons: segmentation as polygons (else compressed RLE).

    Returns:
        dicts with ``file_name``, ``image_id`` (the image's basename), ``height``, ``width`` and
        ``annotations`` (``iscrowd``, contiguous ``category_id`` in [0, 8), ``bbox`` XYXY_ABS,
        ``segmentation``).
    """
    if from_json and not to_polygons:
        raise ValueError(
            "Cityscapes's json annotations are in polygon format. Converting to mask format is "
            "not supported now."
        )
    image_dir, gt_dir = os.fspath(image_dir), os.fspath(gt_dir)
    ret = []
    for image_file, instance_id_file, _, json_file in _get_cityscapes_files(image_dir, gt_dir):
        if from_json:
            inst_image, obj = _instance_image_from_json(json_file)
            height, width = obj["imgHeight"], obj["imgWidth"]
        else:
            if not os.path.isfile(instance_id_file):
                raise FileNotFoundError(f"Cityscapes instance file '{instance_id_file}' is missing")
            inst_image = np.asarray(Image.open(instance_id_file), dtype=np.int32)
            height, width = inst_image.shape
        ret.append(
            {
                "file_name": image_file,
                "image_id": os.path.basename(image_file),
                "height": height,
                "width": width,
                "annotations": _instances_from_id_image(inst_image, to_polygons),
            }
        )
    return ret


def load_cityscapes_semantic(image_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> list[dict]:
    """Load Cityscapes semantic segmentation (train ids).

    Args:
        image_dir: path to the raw dataset, e.g. "~/cityscapes/leftImg8bit/train".
        gt_dir: path to the raw annotations, e.g. "~/cityscapes/gtFine/train".

    Returns:
        dicts with ``file_name``, ``sem_seg_file_name`` (``*_labelTrainIds.png``), ``height`` and
        ``width`` (from the polygons json).

    Raises:
        FileNotFoundError: the train-id labels have not been generated.
    """
    image_dir, gt_dir = os.fspath(image_dir), os.fspath(gt_dir)
    ret = []
    for image_file, _, label_file, json_file in _get_cityscapes_files(image_dir, gt_dir):
        label_file = label_file.replace("labelIds", "labelTrainIds")
        with open(json_file) as f:
            jsonobj = json.load(f)
        ret.append(
            {
                "file_name": image_file,
                "sem_seg_file_name": label_file,
                "height": jsonobj["imgHeight"],
                "width": jsonobj["imgWidth"],
            }
        )
    if not os.path.isfile(ret[0]["sem_seg_file_name"]):
        raise FileNotFoundError(
            f"{ret[0]['sem_seg_file_name']} does not exist. Please generate labelTrainIds.png "
            "with cityscapesscripts (pip install cityscapesscripts; then run "
            "cityscapesscripts/preparation/createTrainIdLabelImgs.py)"
        )
    return ret

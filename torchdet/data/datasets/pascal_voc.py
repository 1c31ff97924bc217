"""Pascal VOC detection: ``ImageSets/Main/<split>.txt`` + ``Annotations/<id>.xml``."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.structures import BoxMode

__all__ = ["load_voc_instances", "register_pascal_voc", "CLASS_NAMES"]

# fmt: off
CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# fmt: on


def _xml_text(node: ET.Element, path: str, anno_file: str) -> str:
    found = node.find(path)
    if found is None or found.text is None:
        raise ValueError(f"Pascal VOC annotation '{anno_file}' has no <{path}> element")
    return found.text.strip()


def load_voc_instances(
    dirname: str | os.PathLike, split: str, class_names: Sequence[str]
) -> list[dict]:
    """Load Pascal VOC detection annotations to the standard format.

    Args:
        dirname: contains "Annotations", "ImageSets", "JPEGImages".
        split: one of "train", "test", "val", "trainval".
        class_names: list or tuple of class names; ``category_id`` is the index in it.

    Returns:
        dicts with ``file_name``, ``image_id`` (the file id string), ``height``, ``width`` and
        ``annotations`` (``category_id``, ``bbox`` x0, y0, x1, y1 with the 1-based pixel
        indices of VOC shifted so that (1, W) becomes (0, W), ``bbox_mode`` = XYXY_ABS).
        "difficult" objects are included, which does not hurt training accuracy.

    Raises:
        FileNotFoundError: the split file or an annotation is missing.
        ValueError: an xml lacks a field, or names a class not in ``class_names``.
    """
    dirname = os.fspath(dirname)
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"Pascal VOC split file '{split_file}' does not exist")
    with open(split_file) as f:
        fileids = [line.strip() for line in f if line.strip()]
    class_index = {name: i for i, name in enumerate(class_names)}

    dicts = []
    for fileid in fileids:
        anno_file = os.path.join(dirname, "Annotations", fileid + ".xml")
        jpeg_file = os.path.join(dirname, "JPEGImages", fileid + ".jpg")
        try:
            tree = ET.parse(anno_file)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"Pascal VOC annotation '{anno_file}' (listed in {split_file}) does not exist"
            ) from e
        r = {
            "file_name": jpeg_file,
            "image_id": fileid,
            "height": int(_xml_text(tree, "./size/height", anno_file)),
            "width": int(_xml_text(tree, "./size/width", anno_file)),
        }
        instances = []
        for obj in tree.findall("object"):
            cls = _xml_text(obj, "name", anno_file)
            if cls not in class_index:
                raise ValueError(
                    f"Pascal VOC annotation '{anno_file}' has an object of class '{cls}', which "
                    f"is not in class_names {list(class_names)}"
                )
            bbox = [
                float(_xml_text(obj, f"bndbox/{k}", anno_file))
                for k in ("xmin", "ymin", "xmax", "ymax")
            ]
            # VOC boxes are 1-based inclusive pixel indices: a box (xmin=1, xmax=W) covers the
            # whole image, which is (0, W) in continuous coordinates.
            bbox[0] -= 1.0
            bbox[1] -= 1.0
            instances.append(
                {"category_id": class_index[cls], "bbox": bbox, "bbox_mode": BoxMode.XYXY_ABS}
            )
        r["annotations"] = instances
        dicts.append(r)
    return dicts


def register_pascal_voc(
    name: str,
    dirname: str | os.PathLike,
    split: str,
    year: int,
    class_names: Sequence[str] = CLASS_NAMES,
) -> None:
    """Register a Pascal VOC split (lazily) with metadata ``thing_classes``, ``dirname``,
    ``year`` and ``split``."""
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, class_names))
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names), dirname=dirname, year=year, split=split
    )

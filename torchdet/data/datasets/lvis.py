"""LVIS instance segmentation (v0.5 and v1), read with the standard json module.

Category names: torchdet does not ship LVIS's 1203 (v1) / 1230 (v0.5) category tables. The
metadata of a registered LVIS dataset therefore starts without ``thing_classes``;
``load_lvis_json`` fills ``thing_classes`` (``synonyms[0]`` of each category, sorted by id, as
Detectron2's tables do) and ``class_image_count`` (the ``image_count`` of each category, used by
the federated loss) from the ``categories`` of the json itself the first time the dataset is
loaded. Anything that needs class names before loading (a visualiser, an evaluator) should call
``DatasetCatalog.get(name)`` first. The "cocofied" LVIS v0.5 splits use COCO's 80 classes and have
complete metadata at registration.
"""

from __future__ import annotations

import logging
import os

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.data.datasets.builtin_meta import get_builtin_metadata
from torchdet.data.datasets.coco import _read_json
from torchdet.structures import BoxMode

__all__ = ["load_lvis_json", "register_lvis_instances", "get_lvis_instances_meta"]

logger = logging.getLogger(__name__)


def register_lvis_instances(
    name: str, metadata: dict, json_file: str | os.PathLike, image_root: str | os.PathLike
) -> None:
    """Register a dataset in LVIS's json annotation format for instance detection and
    segmentation (lazily: nothing is read until ``DatasetCatalog.get(name)``).

    Args:
        name: a name that identifies the dataset, e.g. "lvis_v0.5_train".
        metadata: extra metadata associated with this dataset. It can be an empty dict.
        json_file: path to the json instance annotation file.
        image_root: directory which contains all the images.
    """
    DatasetCatalog.register(name, lambda: load_lvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="lvis", **metadata
    )


def load_lvis_json(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    dataset_name: str | None = None,
    extra_annotation_keys: list[str] | None = None,
) -> list[dict]:
    """Load a json file in LVIS's annotation format.

    Args:
        json_file: full path to the LVIS json annotation file.
        image_root: the directory where the images in this json file exist; the image path is
            ``image_root + <split folder of coco_url> / <file name>`` (LVIS uses COCO images).
        dataset_name: the name of the dataset (e.g., "lvis_v0.5_train"). If provided, this
            function will put "thing_classes" (and "class_image_count") into the metadata
            associated with this dataset when it does not have them yet.
        extra_annotation_keys: annotation keys copied into the dicts besides "bbox",
            "bbox_mode", "category_id", "segmentation".

    Returns:
        dicts with ``file_name``, ``height``, ``width``, ``image_id``,
        ``not_exhaustive_category_ids``, ``neg_category_ids`` and ``annotations`` (``bbox`` XYWH,
        ``bbox_mode``, 0-based ``category_id``, polygon ``segmentation``). The category ids of the
        image-level lists stay 1-based, as in Detectron2.

    Raises:
        FileNotFoundError / ValueError / KeyError: missing or invalid file, no images, duplicate
        annotation ids, an invalid polygon, an unknown category (messages name file and ids).
    """
    json_file = os.fspath(json_file)
    image_root = os.fspath(image_root)
    data = _read_json(json_file)
    if not isinstance(data, dict) or not data.get("images"):
        raise ValueError(f"LVIS annotation file '{json_file}' has no images")

    meta = {}
    if dataset_name is not None:
        meta = get_lvis_instances_meta(dataset_name)
        catalog_meta = MetadataCatalog.get(dataset_name)
        if "thing_classes" not in meta and "categories" in data:
            cats = sorted(data["categories"], key=lambda c: c["id"])
            meta["thing_classes"] = [(c.get("synonyms") or [c["name"]])[0] for c in cats]
            if all("image_count" in c for c in cats):
                meta["class_image_count"] = [
                    {"id": c["id"], "image_count": c["image_count"]} for c in cats
                ]
        catalog_meta.set(**meta)

    id_map = meta.get("thing_dataset_id_to_contiguous_id")
    known = {c["id"] for c in data.get("categories", [])}
    imgs = sorted(data["images"], key=lambda x: x["id"])
    anns_per_image: dict = {img["id"]: [] for img in imgs}
    for ann in data.get("annotations", []):
        if ann["image_id"] in anns_per_image:
            anns_per_image[ann["image_id"]].append(ann)
    ann_ids = [a["id"] for anns in anns_per_image.values() for a in anns]
    if len(set(ann_ids)) != len(ann_ids):
        seen, dups = set(), set()
        for i in ann_ids:
            (dups if i in seen else seen).add(i)
        raise ValueError(
            f"Annotation ids in '{json_file}' are not unique! Duplicated ids: {sorted(dups)[:20]}"
        )

    dataset_dicts = []
    for img_dict in imgs:
        image_id = img_dict["id"]
        record = {
            "file_name": _get_file_name(image_root, img_dict),
            "height": img_dict["height"],
            "width": img_dict["width"],
            "not_exhaustive_category_ids": img_dict.get("not_exhaustive_category_ids", []),
            "neg_category_ids": img_dict.get("neg_category_ids", []),
            "image_id": image_id,
        }
        objs = []
        for anno in anns_per_image[image_id]:
            where = f"'{json_file}': annotation id {anno['id']} (image id {image_id})"
            cid = anno["category_id"]
            if known and cid not in known:
                raise KeyError(f"{where} has category_id={cid}, not in the file's categories")
            obj = {"bbox": anno["bbox"], "bbox_mode": BoxMode.XYWH_ABS}
            if id_map is not None:
                # LVIS loader used with COCO categories ("cocofied")
                try:
                    obj["category_id"] = id_map[cid]
                except KeyError as e:
                    raise KeyError(f"{where}: category_id={cid} is not a COCO category") from e
            else:
                obj["category_id"] = cid - 1  # 1-indexed to 0-indexed
            segm = anno["segmentation"]  # list[list[float]]
            bad = [len(p) for p in segm if len(p) % 2 != 0 or len(p) < 6]
            if bad or not segm:
                raise ValueError(
                    f"{where} contains an invalid polygon (lengths {[len(p) for p in segm]}); "
                    "LVIS polygons need an even number >= 6 of coordinates"
                )
            obj["segmentation"] = segm
            for key in extra_annotation_keys or []:
                obj[key] = anno[key]
            objs.append(obj)
        record["annotations"] = objs
        dataset_dicts.append(record)
    return dataset_dicts


def _get_file_name(img_root: str, img_dict: dict) -> str:
    # The split folder ("train2017", "val2017", "test2017") comes from coco_url, e.g.
    # 'http://images.cocodataset.org/train2017/000000155379.jpg'
    if "coco_url" in img_dict:
        split_folder, file_name = img_dict["coco_url"].split("/")[-2:]
        return os.path.join(img_root + split_folder, file_name)
    return os.path.join(img_root, img_dict["file_name"])


def get_lvis_instances_meta(dataset_name: str) -> dict:
    """Metadata known without reading a file for an LVIS dataset name.

    Args:
        dataset_name: LVIS dataset name, e.g. "lvis_v1_train", "lvis_v0.5_val_cocofied".

    Returns:
        COCO's instances metadata for "cocofied" names; an empty dict otherwise, the class names
        being read from the json by :func:`load_lvis_json` (see the module docstring).

    Raises:
        ValueError: the name is not an LVIS v0.5 / v1 name.
    """
    if "cocofied" in dataset_name:
        return get_builtin_metadata("coco")
    if "v0.5" in dataset_name or "v1" in dataset_name:
        return {}
    raise ValueError(f"No built-in metadata for dataset {dataset_name}")

"""COCO-format instance annotations and semantic-segmentation folders.

``load_coco_json`` reads a COCO json (through pycocotools' index) into the standard dataset dicts;
``convert_to_coco_dict`` / ``convert_to_coco_json`` go the other way so that any registered
dataset can be evaluated with the COCO API; ``load_sem_seg`` pairs images with label PNGs.

Bad annotations are reported with the json file and the image / annotation id: unknown
categories, negative box sizes, odd-length polygons, malformed keypoints and duplicate ids raise;
polygons with fewer than 3 points are dropped (as Detectron2 does) and counted in one warning that
lists the annotation ids.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import os
import tempfile
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO

from torchdet.data.catalog import DatasetCatalog, MetadataCatalog
from torchdet.structures import BoxMode
from torchdet.utils.file_io import PathManager

__all__ = [
    "load_coco_json",
    "load_sem_seg",
    "convert_to_coco_json",
    "convert_to_coco_dict",
    "register_coco_instances",
]

logger = logging.getLogger(__name__)


def _read_json(json_file: str | os.PathLike) -> Any:
    """Parse a json file (a local path, a URL or an fsspec path); errors name the file."""
    json_file = os.fspath(json_file)
    if "://" not in json_file and not os.path.isfile(json_file):
        raise FileNotFoundError(f"Annotation file '{json_file}' does not exist")
    try:
        # PathManager also reads URLs and fsspec paths (s3://, gs://, ...)
        with PathManager.open(json_file, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"Annotation file '{json_file}' is not valid json: {e}") from e


def _coco_api(json_file: str, dataset: Any) -> COCO:
    """Build pycocotools' index over an already-parsed COCO dict (validated top level)."""
    if not isinstance(dataset, dict):
        raise ValueError(
            f"Annotation file '{json_file}' must contain a json object with 'images', "
            f"got a {type(dataset).__name__}"
        )
    if not dataset.get("images"):
        raise ValueError(
            f"Annotation file '{json_file}' has no images (empty or missing 'images' list); "
            "a COCO json needs at least one entry in 'images'"
        )
    coco_api = COCO()
    coco_api.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_api.createIndex()
    return coco_api


def _check_duplicate_ann_ids(json_file: str, anns: list[list[dict]]) -> None:
    ann_ids = [ann["id"] for anns_per_image in anns for ann in anns_per_image]
    if len(set(ann_ids)) == len(ann_ids):
        return
    seen, dups = set(), set()
    for i in ann_ids:
        (dups if i in seen else seen).add(i)
    raise ValueError(
        f"Annotation ids in '{json_file}' are not unique! Duplicated ids: {sorted(dups)[:20]}"
        + (f" (and {len(dups) - 20} more)" if len(dups) > 20 else "")
    )


def _validate_keypoints(
    json_file: str, anno: dict, keypoints: list, cat_num_keypoints: dict[int, int]
) -> None:
    where = f"'{json_file}': annotation id {anno.get('id')} (image id {anno.get('image_id')})"
    if len(keypoints) % 3 != 0:
        raise ValueError(
            f"{where} has {len(keypoints)} keypoint values; expected a multiple of 3 "
            "(x, y, visibility per keypoint)"
        )
    expected = cat_num_keypoints.get(anno.get("category_id"))
    if expected is not None and len(keypoints) // 3 != expected:
        raise ValueError(
            f"{where} has {len(keypoints) // 3} keypoints but its category "
            f"{anno.get('category_id')} declares {expected}"
        )


def load_coco_json(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    dataset_name: str | None = None,
    extra_annotation_keys: list[str] | None = None,
) -> list[dict]:
    """Load a json file in COCO's instances annotation format.

    Args:
        json_file: full path to the json file in COCO instances annotation format.
        image_root: the directory where the images in this json file exist.
        dataset_name: the name of the dataset (e.g., coco_2017_train). When given, the function
            sets ``thing_classes`` (category names sorted by id) and
            ``thing_dataset_id_to_contiguous_id`` in the dataset's metadata and maps every
            ``category_id`` to a contiguous id in ``[0, #categories)``.
        extra_annotation_keys: annotation keys copied into the dicts besides "iscrowd", "bbox",
            "keypoints", "category_id", "segmentation".

    Returns:
        One dict per image (sorted by image id) with ``file_name``, ``height``, ``width``,
        ``image_id`` and ``annotations``, each annotation with ``bbox`` and ``bbox_mode`` (x, y,
        w, h in absolute pixels with ``BoxMode.XYWH_ABS``; 5-value boxes are rotated boxes cx,
        cy, w, h, angle with ``BoxMode.XYWHA_ABS``), ``category_id``, and if present
        ``iscrowd``, ``segmentation`` (polygons ``list[list[float]]`` or a compressed RLE dict) and
        ``keypoints`` (flat x, y, v with +0.5 added to x and y, so that they become continuous
        coordinates).

    Raises:
        FileNotFoundError: the json file is missing.
        ValueError: invalid json, no images, duplicate annotation ids, a negative box size, an
            odd-length polygon, malformed keypoints, or an "ignore" flag.
        KeyError: an annotation's category id is not in the file's categories.
    """
    json_file = os.fspath(json_file)
    image_root = os.fspath(image_root)
    coco_api = _coco_api(json_file, _read_json(json_file))

    cat_ids = sorted(coco_api.getCatIds())
    id_map = None
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        cats = coco_api.loadCats(cat_ids)
        # In COCO, certain category ids are artificially removed, and by convention they are
        # always ignored. Sorting by id keeps the class order stable.
        meta.thing_classes = [c["name"] for c in sorted(cats, key=lambda x: x["id"])]
        contiguous = not cat_ids or (min(cat_ids) == 1 and max(cat_ids) == len(cat_ids))
        if not contiguous and "coco" not in dataset_name:
            logger.warning(
                "Category ids in annotations are not in [1, #categories]! "
                "We'll apply a mapping for you."
            )
        id_map = {v: i for i, v in enumerate(cat_ids)}
        meta.thing_dataset_id_to_contiguous_id = id_map
    known_cats = set(cat_ids)
    cat_num_keypoints = {
        c["id"]: len(c["keypoints"])
        for c in coco_api.dataset.get("categories", [])
        if "keypoints" in c
    }

    img_ids = sorted(coco_api.imgs.keys())
    imgs = coco_api.loadImgs(img_ids)
    logger.info(f"Loaded {len(imgs)} images in COCO format from {json_file}")
    anns = [coco_api.imgToAnns[img_id] for img_id in img_ids]
    total_num_valid_anns = sum(len(x) for x in anns)
    total_num_anns = len(coco_api.dataset.get("annotations", []))
    if total_num_valid_anns < total_num_anns:
        logger.warning(
            f"{json_file} contains {total_num_anns} annotations, but only "
            f"{total_num_valid_anns} of them match to images in the file."
        )
    if "minival" not in json_file:
        # The COCO 2014 minival files have known duplicated ids (harmless there).
        _check_duplicate_ann_ids(json_file, anns)

    ann_keys = ["iscrowd", "bbox", "keypoints", "category_id"] + list(extra_annotation_keys or [])
    dropped_polygons: list = []  # annotation ids with polygons of < 3 points
    dropped_instances: list = []  # annotation ids with no valid polygon left
    dataset_dicts = []
    for img_dict, anno_dict_list in zip(imgs, anns):
        image_id = img_dict["id"]
        record = {
            "file_name": os.path.join(image_root, img_dict["file_name"]),
            "height": img_dict["height"],
            "width": img_dict["width"],
            "image_id": image_id,
        }
        objs = []
        for anno in anno_dict_list:
            ann_id = anno.get("id")
            where = f"'{json_file}': annotation id {ann_id} (image id {image_id})"
            if anno.get("ignore", 0) != 0:
                raise ValueError(f"{where}: the 'ignore' field of COCO json is not supported.")
            obj = {key: anno[key] for key in ann_keys if key in anno}
            bbox = obj.get("bbox")
            if bbox is not None:
                if len(bbox) not in (4, 5):
                    raise ValueError(
                        f"{where}: 'bbox' must have 4 values (x, y, w, h) or 5 (cx, cy, w, h, "
                        f"angle), got {bbox}"
                    )
                if bbox[2] < 0 or bbox[3] < 0:
                    raise ValueError(f"{where}: 'bbox' has a negative width or height: {bbox}")
            if "category_id" not in obj:
                raise KeyError(f"{where} has no 'category_id'")
            if known_cats and obj["category_id"] not in known_cats:
                raise KeyError(
                    f"{where} has category_id={obj['category_id']}, which does not exist in "
                    f"'categories' of the json file (ids: {cat_ids})"
                )

            segm = anno.get("segmentation", None)
            if segm:  # either list[list[float]] or dict(RLE)
                if isinstance(segm, dict):
                    if isinstance(segm["counts"], list):
                        # uncompressed RLE -> compressed, which the mapper and COCO API expect
                        segm = mask_util.frPyObjects(segm, *segm["size"])
                else:
                    if any(len(poly) % 2 != 0 for poly in segm):
                        raise ValueError(
                            f"{where}: a polygon has an odd number of coordinates "
                            f"({[len(p) for p in segm]}); expected x, y pairs"
                        )
                    valid = [poly for poly in segm if len(poly) >= 6]
                    if len(valid) < len(segm):
                        dropped_polygons.append(ann_id)
                    if not valid:
                        dropped_instances.append(ann_id)
                        continue  # an instance without any mask is ignored
                    segm = valid
                obj["segmentation"] = segm

            keypts = anno.get("keypoints", None)
            if keypts:  # list[int]
                _validate_keypoints(json_file, anno, keypts, cat_num_keypoints)
                # COCO keypoints are integer pixel indices in [0, W-1]; +0.5 moves them to the
                # pixel centres in the continuous coordinates used by boxes and polygons.
                obj["keypoints"] = [v + 0.5 if i % 3 != 2 else v for i, v in enumerate(keypts)]

            # 5 values: a rotated box, as written by convert_to_coco_dict for rotated datasets
            rotated = bbox is not None and len(bbox) == 5
            obj["bbox_mode"] = BoxMode.XYWHA_ABS if rotated else BoxMode.XYWH_ABS
            if id_map:
                obj["category_id"] = id_map[obj["category_id"]]
            objs.append(obj)
        record["annotations"] = objs
        dataset_dicts.append(record)

    if dropped_polygons:
        logger.warning(
            f"'{json_file}': dropped polygons with fewer than 3 points from "
            f"{len(dropped_polygons)} annotations (ids {dropped_polygons[:20]}); "
            f"filtered out {len(dropped_instances)} instances without valid segmentation "
            f"(ids {dropped_instances[:20]}). There might be issues in your dataset generation."
        )
    return dataset_dicts


def _file_stem(folder: str, path: str) -> str:
    return os.path.splitext(os.path.normpath(os.path.relpath(path, start=folder)))[0]


def load_sem_seg(
    gt_root: str | os.PathLike,
    image_root: str | os.PathLike,
    gt_ext: str = "png",
    image_ext: str = "jpg",
) -> list[dict]:
    """Load semantic segmentation datasets: every ``*.<gt_ext>`` of ``gt_root`` is paired with the
    ``*.<image_ext>`` of ``image_root`` that has the same stem.

    Args:
        gt_root: full path to the ground truth semantic segmentation files. Semantic labels are
            stored as images with integer values of contiguous ids, 255 usually meaning ignore.
        image_root: the directory where the input images are.
        gt_ext: file extension of the ground truth annotations.
        image_ext: file extension of the input images.

    Returns:
        Dicts with ``file_name`` and ``sem_seg_file_name``, sorted by stem. When the folders differ
        only their intersection is kept (with a warning).

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: no label files, or no image matches a label file.
    """
    gt_root, image_root = os.fspath(gt_root), os.fspath(image_root)
    for folder in (gt_root, image_root):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"load_sem_seg: directory '{folder}' does not exist")

    def listdir(folder: str, ext: str) -> dict[str, str]:
        files = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(ext)]
        return {_file_stem(folder, f): f for f in files}

    inputs = listdir(image_root, image_ext)
    gts = listdir(gt_root, gt_ext)
    if not gts:
        raise ValueError(f"No annotations (*.{gt_ext}) found in '{gt_root}'.")
    if len(inputs) != len(gts) or inputs.keys() != gts.keys():
        common = inputs.keys() & gts.keys()
        logger.warning(
            f"Directory {image_root} and {gt_root} have {len(inputs)} and {len(gts)} files, "
            f"respectively. Will use their intersection of {len(common)} files."
        )
        if not common:
            raise ValueError(
                f"No image in '{image_root}' (*.{image_ext}) matches a label in '{gt_root}' "
                f"(*.{gt_ext})"
            )
    stems = sorted(inputs.keys() & gts.keys())
    logger.info(f"Loaded {len(stems)} images with semantic segmentation from {image_root}")
    return [{"file_name": inputs[s], "sem_seg_file_name": gts[s]} for s in stems]


def _polygons_area(polygons: list[list[float]]) -> float:
    """Sum of the shoelace areas of the polygons of one instance (as PolygonMasks.area)."""
    area = 0.0
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        area += 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area


def convert_to_coco_dict(dataset_name: str) -> dict:
    """Convert a registered dataset into a COCO json dict.

    Generic dataset dicts become COCO annotations so the COCO API can evaluate any dataset:
    boxes are converted to XYWH_ABS (XYWHA_ABS for rotated boxes), areas come from the polygons
    (shoelace), the RLE (pixel count) or the box, keypoints get their 0.5 offset removed, and
    contiguous category ids are mapped back through ``thing_dataset_id_to_contiguous_id``.

    Args:
        dataset_name: a name registered in DatasetCatalog and MetadataCatalog; its metadata needs
            ``thing_classes``.

    Returns:
        dict with "info", "images", "categories", "licenses" and (when there is at least one
        annotation) "annotations".
    """
    dataset_dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)

    if hasattr(metadata, "thing_dataset_id_to_contiguous_id"):
        reverse_id_mapping = {v: k for k, v in metadata.thing_dataset_id_to_contiguous_id.items()}

        def reverse_id_mapper(contiguous_id: int) -> int:
            try:
                return reverse_id_mapping[contiguous_id]
            except KeyError as e:
                raise KeyError(
                    f"convert_to_coco_dict('{dataset_name}'): contiguous category id "
                    f"{contiguous_id} is not a value of thing_dataset_id_to_contiguous_id"
                ) from e
    else:

        def reverse_id_mapper(contiguous_id: int) -> int:
            return contiguous_id

    categories = [
        {"id": reverse_id_mapper(i), "name": name} for i, name in enumerate(metadata.thing_classes)
    ]

    logger.info("Converting dataset dicts into COCO format")
    coco_images, coco_annotations = [], []
    for image_id, image_dict in enumerate(dataset_dicts):
        coco_image = {
            "id": image_dict.get("image_id", image_id),
            "width": int(image_dict["width"]),
            "height": int(image_dict["height"]),
            "file_name": str(image_dict["file_name"]),
        }
        coco_images.append(coco_image)
        for annotation in image_dict.get("annotations", []):
            bbox = annotation["bbox"]
            if isinstance(bbox, np.ndarray):
                if bbox.ndim != 1:
                    raise ValueError(f"bbox has to be 1-dimensional. Got shape={bbox.shape}.")
                bbox = bbox.tolist()
            bbox = [float(x) for x in bbox]
            if len(bbox) not in (4, 5):
                raise ValueError(
                    f"image id {coco_image['id']}: bbox has to have length 4 or 5. Got {bbox}."
                )
            from_bbox_mode = annotation["bbox_mode"]
            to_bbox_mode = BoxMode.XYWH_ABS if len(bbox) == 4 else BoxMode.XYWHA_ABS
            bbox = [float(x) for x in BoxMode.convert(bbox, from_bbox_mode, to_bbox_mode)]

            if "segmentation" in annotation:
                segmentation = annotation["segmentation"]
                if isinstance(segmentation, list):
                    area = _polygons_area(segmentation)
                elif isinstance(segmentation, dict):  # RLE
                    rle = segmentation
                    if isinstance(rle["counts"], list):
                        rle = mask_util.frPyObjects(rle, *rle["size"])
                    area = float(mask_util.area(rle))
                else:
                    raise TypeError(
                        f"image id {coco_image['id']}: unknown segmentation type "
                        f"{type(segmentation).__name__} (expected polygons list or RLE dict)"
                    )
            else:
                # w * h both for XYWH and XYWHA
                area = bbox[2] * bbox[3]

            coco_annotation = {
                "id": len(coco_annotations) + 1,
                "image_id": coco_image["id"],
                "bbox": [round(x, 3) for x in bbox],
                "area": float(area),
                "iscrowd": int(annotation.get("iscrowd", 0)),
                "category_id": int(reverse_id_mapper(annotation["category_id"])),
            }
            if "keypoints" in annotation:
                # undo the +0.5 of load_coco_json, on a copy (the dataset dicts may be cached)
                keypoints = [
                    v - 0.5 if i % 3 != 2 else v for i, v in enumerate(annotation["keypoints"])
                ]
                if "num_keypoints" in annotation:
                    num_keypoints = annotation["num_keypoints"]
                else:
                    num_keypoints = sum(kp > 0 for kp in keypoints[2::3])
                coco_annotation["keypoints"] = keypoints
                coco_annotation["num_keypoints"] = int(num_keypoints)
            if "segmentation" in annotation:
                seg = annotation["segmentation"]
                if isinstance(seg, dict) and isinstance(seg["counts"], bytes):
                    seg = dict(seg, counts=seg["counts"].decode("ascii"))
                coco_annotation["segmentation"] = seg
            coco_annotations.append(coco_annotation)

    logger.info(
        f"Conversion finished, #images: {len(coco_images)}, #annotations: {len(coco_annotations)}"
    )
    info = {
        "date_created": str(datetime.datetime.now()),
        "description": "Automatically generated COCO json file for torchdet.",
    }
    coco_dict = {
        "info": info,
        "images": coco_images,
        "categories": categories,
        "licenses": None,
    }
    if coco_annotations:
        coco_dict["annotations"] = coco_annotations
    return coco_dict


def convert_to_coco_json(
    dataset_name: str, output_file: str | os.PathLike, allow_cached: bool = True
) -> None:
    """Convert a registered dataset to COCO format and write it to ``output_file``.

    The file is written to a temporary name in the same folder and then renamed, so a reader
    never sees a partial file and concurrent writers do not corrupt each other.

    Args:
        dataset_name: a dataset registered in DatasetCatalog, with metadata in MetadataCatalog.
        output_file: path of the json file to write.
        allow_cached: if ``output_file`` already exists, reuse it instead of converting again.
    """
    output_file = os.fspath(output_file)
    out_dir = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(output_file) and allow_cached:
        logger.warning(
            f"Using previously cached COCO format annotations at '{output_file}'. "
            "You need to clear the cache file if your dataset has been modified."
        )
        return
    logger.info(f"Converting annotations of dataset '{dataset_name}' to COCO format ...")
    coco_dict = convert_to_coco_dict(dataset_name)
    logger.info(f"Caching COCO format annotations at '{output_file}' ...")
    fd, tmp_file = tempfile.mkstemp(
        prefix=os.path.basename(output_file) + ".", suffix=".tmp", dir=out_dir
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(coco_dict, f)
        os.replace(tmp_file, output_file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp_file)
        raise


def register_coco_instances(
    name: str,
    metadata: dict,
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
) -> None:
    """Register a dataset in COCO's json annotation format for instance detection, instance
    segmentation and keypoint detection.

    Registration is lazy: the json is only read by ``DatasetCatalog.get(name)``.

    Args:
        name: a name that identifies the dataset, e.g. "coco_2014_train".
        metadata: extra metadata associated with this dataset (can be an empty dict).
        json_file: path to the json instance annotation file.
        image_root: directory which contains all the images.
    """
    if not isinstance(name, str):
        raise TypeError(f"register_coco_instances: name must be a str, got {name!r}")
    for arg, value in (("json_file", json_file), ("image_root", image_root)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(
                f"register_coco_instances('{name}'): {arg} must be a path, got {value!r}"
            )
    if not isinstance(metadata, dict):
        raise TypeError(
            f"register_coco_instances('{name}'): metadata must be a dict, got "
            f"{type(metadata).__name__}"
        )
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata
    )

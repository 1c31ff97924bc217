"""Helpers shared by dataset mappers: image reading, annotation transforms, ``Instances``.

Shape shorthand: image ``ndarray[H, W, C]`` (uint8 for PIL modes/"BGR", float for YUV);
boxes ``ndarray[N, 4]`` XYXY_ABS; keypoints ``ndarray[K, 3]`` (x, y, visibility).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image, UnidentifiedImageError

from torchdet.structures import (
    BitMasks,
    Boxes,
    BoxMode,
    Instances,
    Keypoints,
    PolygonMasks,
    RotatedBoxes,
    polygons_to_bitmask,
)

from . import transforms as T
from .catalog import MetadataCatalog

__all__ = [
    "SizeMismatchError",
    "annotations_to_instances",
    "annotations_to_instances_rotated",
    "build_augmentation",
    "build_transform_gen",
    "check_image_size",
    "check_metadata_consistency",
    "convert_PIL_to_numpy",
    "convert_image_to_rgb",
    "create_keypoint_hflip_indices",
    "filter_empty_instances",
    "gen_crop_transform_with_instance",
    "get_fed_loss_cls_weights",
    "read_image",
    "transform_instance_annotations",
    "transform_keypoint_annotations",
    "transform_proposals",
]

logger = logging.getLogger(__name__)


class SizeMismatchError(ValueError):
    """The image read from disk does not have the annotated width/height."""


# BT.601 RGB <-> YUV (https://en.wikipedia.org/wiki/YUV#SDTV_with_BT.601)
_M_RGB2YUV = [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]]
_M_YUV2RGB = [[1.0, 0.0, 1.13983], [1.0, -0.39465, -0.58060], [1.0, 2.03211, 0.0]]

# EXIF orientation tag value -> the PIL transpose that shows the image upright.
_EXIF_ORIENT = 274
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _bbox_to_xyxy(bbox: Any, mode: Any) -> np.ndarray:
    """One box in ``mode`` -> ``ndarray[4]`` float64 XYXY_ABS.

    The two modes of nearly every annotation are converted inline: ``BoxMode.convert`` goes
    through a tensor, which costs more than the rest of an annotation's transform.
    """
    if mode == BoxMode.XYXY_ABS:
        return np.array(bbox, dtype=np.float64).reshape(4)
    if mode == BoxMode.XYWH_ABS:
        x, y, w, h = np.asarray(bbox, dtype=np.float64).reshape(4)
        return np.array([x, y, x + w, y + h])
    return np.asarray(BoxMode.convert(bbox, mode, BoxMode.XYXY_ABS), dtype=np.float64).reshape(4)


def convert_PIL_to_numpy(image: Image.Image, format: str | None) -> np.ndarray:  # noqa: N802
    """Convert a PIL image to ``ndarray[H, W, C]`` in ``format``.

    Args:
        image: a PIL image.
        format: a PIL mode ("RGB", "L", ...), "BGR", "YUV-BT.601" (float in roughly [0, 1]),
            or ``None`` to keep the image's own mode.
    """
    if format is not None:
        pil_mode = "RGB" if format in ("BGR", "YUV-BT.601") else format
        try:
            if image.mode != pil_mode:  # same-mode convert() would copy every pixel
                image = image.convert(pil_mode)
        except ValueError as e:
            raise ValueError(f"cannot convert an image to format {format!r}: {e}") from e
    array = np.asarray(image)
    if format == "L":
        array = np.expand_dims(array, -1)
    elif format == "BGR":
        array = array[:, :, ::-1]
    elif format == "YUV-BT.601":
        array = np.dot(array / 255.0, np.array(_M_RGB2YUV).T)
    return array


def convert_image_to_rgb(image: np.ndarray | torch.Tensor, format: str) -> np.ndarray:
    """Convert an ``(H, W, C)`` image in ``format`` to uint8 RGB ``ndarray[H, W, 3]``."""
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if format == "BGR":
        return np.ascontiguousarray(image[:, :, [2, 1, 0]])
    if format == "YUV-BT.601":
        return (np.dot(image, np.array(_M_YUV2RGB).T) * 255.0).astype(np.uint8)
    if format == "L":
        image = image[:, :, 0]
    image = image.astype(np.uint8)
    return np.asarray(Image.fromarray(image, mode=format).convert("RGB"))


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip the image as its EXIF orientation tag says (cameras store it sideways)."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENT)
    except Exception:  # malformed EXIF: show the pixels as stored
        return image
    method = _EXIF_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def read_image(file_name: str, format: str | None = None) -> np.ndarray:
    """Read an image file into ``ndarray[H, W, C]``, applying its EXIF orientation.

    Args:
        file_name: image path.
        format: see :func:`convert_PIL_to_numpy`.

    Raises:
        FileNotFoundError: no such file (the message names it).
        ValueError: the file is not a readable image or is truncated (the message names it).
    """
    try:
        with open(file_name, "rb") as f:
            image = Image.open(f)
            image.load()  # decode now, while the file is open, so truncation surfaces here
    except FileNotFoundError as e:
        raise FileNotFoundError(f"image file not found: {file_name}") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image {file_name}: {type(e).__name__}: {e}") from e
    image = _apply_exif_orientation(image)
    return convert_PIL_to_numpy(image, format)


def check_image_size(dataset_dict: dict, image: np.ndarray) -> None:
    """Check the image against the dict's ``width``/``height``, filling them in if absent.

    Raises:
        SizeMismatchError: naming the file and image id, with expected vs read sizes.
    """
    image_wh = (image.shape[1], image.shape[0])
    if "width" in dataset_dict or "height" in dataset_dict:
        expected_wh = (dataset_dict.get("width"), dataset_dict.get("height"))
        if image_wh != expected_wh:
            raise SizeMismatchError(
                f"image {dataset_dict.get('file_name', '?')} (image_id="
                f"{dataset_dict.get('image_id', '?')}) has (width, height) {image_wh}, but the "
                f"annotation says {expected_wh}; check the width/height in your annotations"
            )
    dataset_dict.setdefault("width", image.shape[1])
    dataset_dict.setdefault("height", image.shape[0])


def transform_proposals(
    dataset_dict: dict,
    image_shape: tuple[int, int],
    transforms: T.TransformList,
    *,
    proposal_topk: int,
    min_box_size: float = 0,
) -> None:
    """Move precomputed proposals of ``dataset_dict`` into ``dataset_dict["proposals"]``.

    Transforms ``proposal_boxes`` (in ``proposal_bbox_mode``), clips them to ``image_shape``,
    drops boxes with a side <= ``min_box_size`` and keeps the first ``proposal_topk`` (the
    proposals are sorted by objectness). Does nothing if the dict has no proposals.
    """
    if "proposal_boxes" not in dataset_dict:
        return
    boxes = BoxMode.convert(
        dataset_dict.pop("proposal_boxes"),
        dataset_dict.pop("proposal_bbox_mode"),
        BoxMode.XYXY_ABS,
    )
    boxes = Boxes(transforms.apply_box(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)))
    logits = torch.as_tensor(
        np.asarray(dataset_dict.pop("proposal_objectness_logits")).astype("float32")
    )
    boxes.clip(image_shape)
    keep = boxes.nonempty(threshold=min_box_size)
    proposals = Instances(image_shape)
    proposals.proposal_boxes = boxes[keep][:proposal_topk]
    proposals.objectness_logits = logits[keep][:proposal_topk]
    dataset_dict["proposals"] = proposals


def transform_keypoint_annotations(
    keypoints: list[float] | np.ndarray,
    transforms: T.TransformList,
    image_size: tuple[int, int],
    keypoint_hflip_indices: np.ndarray | None = None,
) -> np.ndarray:
    """Transform COCO keypoints ``[x, y, v] * K``.

    Keypoints that land outside the image get visibility 0 (and are zeroed, like unlabeled
    ones). An odd number of horizontal flips swaps left/right keypoints with
    ``keypoint_hflip_indices``.

    Returns:
        ndarray[K, 3] float64.
    """
    keypoints = np.asarray(keypoints, dtype="float64").reshape(-1, 3)
    xy = transforms.apply_coords(keypoints[:, :2])
    inside = ((xy >= 0) & (xy <= np.array(image_size[::-1]))).all(axis=1)
    keypoints[:, :2] = xy
    keypoints[~inside, 2] = 0
    tfms = transforms.transforms if isinstance(transforms, T.TransformList) else [transforms]
    if sum(isinstance(t, T.HFlipTransform) for t in tfms) % 2 == 1:
        if keypoint_hflip_indices is None:
            raise ValueError("cannot flip keypoints without keypoint_hflip_indices")
        if len(keypoints) != len(keypoint_hflip_indices):
            raise ValueError(
                f"keypoint_hflip_indices has {len(keypoint_hflip_indices)} entries but the "
                f"annotation has {len(keypoints)} keypoints"
            )
        keypoints = keypoints[np.asarray(keypoint_hflip_indices, dtype=np.int64), :]
    keypoints[keypoints[:, 2] == 0] = 0
    return keypoints


def transform_instance_annotations(
    annotation: dict,
    transforms: T.TransformList | list[T.Transform],
    image_size: tuple[int, int],
    *,
    keypoint_hflip_indices: np.ndarray | None = None,
) -> dict:
    """Apply ``transforms`` to one instance annotation (in place, also returned).

    ``bbox`` becomes XYXY_ABS clipped to ``image_size`` (h, w); polygons stay polygons (list
    of flat arrays); RLE segmentation becomes a decoded, transformed ``ndarray[H, W]`` uint8
    mask; keypoints go through :func:`transform_keypoint_annotations`.
    """
    if isinstance(transforms, tuple | list):
        transforms = T.TransformList(list(transforms))
    bbox = _bbox_to_xyxy(annotation["bbox"], annotation["bbox_mode"])
    bbox = transforms.apply_box(bbox[None])[0].clip(min=0)
    annotation["bbox"] = np.minimum(bbox, list(image_size + image_size)[::-1])
    annotation["bbox_mode"] = BoxMode.XYXY_ABS

    if "segmentation" in annotation:
        segm = annotation["segmentation"]
        if isinstance(segm, list):
            polygons = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segm]
            annotation["segmentation"] = [
                p.reshape(-1) for p in transforms.apply_polygons(polygons)
            ]
        elif isinstance(segm, dict):
            mask = transforms.apply_segmentation(mask_util.decode(segm))
            if tuple(mask.shape[:2]) != tuple(image_size):
                raise ValueError(
                    f"transformed RLE mask has size {mask.shape[:2]}, image has {image_size}"
                )
            annotation["segmentation"] = mask
        else:
            raise ValueError(
                f"cannot transform segmentation of type {type(segm).__name__}: expected a list "
                "of polygons or a COCO RLE dict"
            )
    if "keypoints" in annotation:
        annotation["keypoints"] = transform_keypoint_annotations(
            annotation["keypoints"], transforms, image_size, keypoint_hflip_indices
        )
    return annotation


def annotations_to_instances(
    annos: list[dict], image_size: tuple[int, int], mask_format: str = "polygon"
) -> Instances:
    """Build the ground-truth ``Instances`` of one image from transformed annotations.

    Args:
        annos: annotations (after :func:`transform_instance_annotations`).
        image_size: (h, w).
        mask_format: "polygon" (``PolygonMasks``; needs polygon segmentations) or "bitmask"
            (``BitMasks``; from polygons, RLE dicts or ``ndarray[H, W]`` masks).

    Returns:
        Instances with ``gt_boxes`` (clipped), ``gt_classes`` (int64) and, when present in the
        annotations, ``gt_masks`` and ``gt_keypoints``.
    """
    if mask_format not in ("polygon", "bitmask"):
        raise ValueError(f"mask_format must be 'polygon' or 'bitmask', got {mask_format!r}")
    if len(annos):
        boxes = np.stack([_bbox_to_xyxy(obj["bbox"], obj["bbox_mode"]) for obj in annos])
    else:
        boxes = np.zeros((0, 4), dtype=np.float32)
    target = Instances(image_size)
    gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
    gt_boxes.clip(image_size)
    target.gt_boxes = gt_boxes
    target.gt_classes = torch.tensor([int(obj["category_id"]) for obj in annos], dtype=torch.int64)

    if len(annos) and "segmentation" in annos[0]:
        segms = [obj["segmentation"] for obj in annos]
        if mask_format == "polygon":
            for obj, segm in zip(annos, segms):
                if not isinstance(segm, list):
                    raise ValueError(
                        f"annotation {obj.get('id', '?')} has a {type(segm).__name__} "
                        "segmentation (RLE or bitmask); use mask_format='bitmask' "
                        "(INPUT.MASK_FORMAT: bitmask) for such annotations"
                    )
            target.gt_masks = PolygonMasks(segms)
        else:
            h, w = image_size
            masks = []
            for obj, segm in zip(annos, segms):
                if isinstance(segm, list):
                    masks.append(polygons_to_bitmask(segm, h, w))
                elif isinstance(segm, dict):
                    masks.append(mask_util.decode(segm))
                elif isinstance(segm, np.ndarray) and segm.ndim == 2:
                    masks.append(segm)
                else:
                    raise ValueError(
                        f"annotation {obj.get('id', '?')}: segmentation must be polygons, a COCO "
                        f"RLE dict or a 2-d array, got {type(segm).__name__}"
                    )
            target.gt_masks = BitMasks(
                torch.stack([torch.from_numpy(np.ascontiguousarray(m)) for m in masks])
            )

    if len(annos) and "keypoints" in annos[0]:
        # Transformed keypoints are (K, 3); raw COCO ones are flat [x, y, v] * K.
        kpts = [
            np.asarray(obj.get("keypoints", []), dtype=np.float32).reshape(-1, 3) for obj in annos
        ]
        target.gt_keypoints = Keypoints(np.stack(kpts))
    return target


def annotations_to_instances_rotated(annos: list[dict], image_size: tuple[int, int]) -> Instances:
    """Ground-truth ``Instances`` with ``gt_boxes`` as ``RotatedBoxes`` (XYWHA_ABS ``bbox``)."""
    boxes = [obj["bbox"] for obj in annos]
    target = Instances(image_size)
    gt_boxes = RotatedBoxes(torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 5)))
    gt_boxes.clip(image_size)
    target.gt_boxes = gt_boxes
    target.gt_classes = torch.tensor([int(obj["category_id"]) for obj in annos], dtype=torch.int64)
    return target


def filter_empty_instances(
    instances: Instances,
    by_box: bool = True,
    by_mask: bool = True,
    box_threshold: float = 1e-5,
    return_mask: bool = False,
):
    """Drop instances whose box has a side <= ``box_threshold`` or whose mask is empty.

    Returns:
        the kept ``Instances``, and the boolean keep mask (Tensor[N]) if ``return_mask``.
    """
    if not (by_box or by_mask):
        raise ValueError("filter_empty_instances: set by_box or by_mask")
    keeps = []
    if by_box:
        keeps.append(instances.gt_boxes.nonempty(threshold=box_threshold))
    if by_mask and instances.has("gt_masks"):
        keeps.append(instances.gt_masks.nonempty())
    if not keeps:
        return (
            (instances, torch.ones(len(instances), dtype=torch.bool)) if return_mask else instances
        )
    keep = keeps[0]
    for k in keeps[1:]:
        keep = keep & k
    # Nothing to drop (the usual case): skip re-indexing every field.
    kept = instances if bool(keep.all()) else instances[keep]
    if return_mask:
        return kept, keep
    return kept


def check_metadata_consistency(key: str, dataset_names: list[str]) -> None:
    """Raise ``ValueError`` if the datasets' metadata ``key`` differ (naming both datasets)."""
    if len(dataset_names) == 0:
        return
    entries = [getattr(MetadataCatalog.get(d), key) for d in dataset_names]
    for name, entry in zip(dataset_names, entries):
        if entry != entries[0]:
            logger.error("Metadata %r of %s is %s", key, name, entry)
            logger.error("Metadata %r of %s is %s", key, dataset_names[0], entries[0])
            raise ValueError(
                f"datasets {dataset_names[0]!r} and {name!r} have different metadata {key!r}"
            )


def create_keypoint_hflip_indices(dataset_names: str | list[str]) -> np.ndarray:
    """Index of each keypoint's mirror (from ``keypoint_names`` and ``keypoint_flip_map``).

    Returns:
        ndarray[K] int: ``flipped = keypoints[indices]`` after a horizontal flip.
    """
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    dataset_names = list(dataset_names)
    check_metadata_consistency("keypoint_names", dataset_names)
    check_metadata_consistency("keypoint_flip_map", dataset_names)
    meta = MetadataCatalog.get(dataset_names[0])
    names = list(meta.keypoint_names)
    flip_map = dict(meta.keypoint_flip_map)
    flip_map.update({v: k for k, v in flip_map.items()})
    flipped = [flip_map.get(n, n) for n in names]
    return np.asarray([names.index(n) for n in flipped], dtype=np.int64)


def get_fed_loss_cls_weights(
    dataset_names: str | list[str], freq_weight_power: float = 1.0
) -> torch.Tensor:
    """Per-class weights ``image_count ** power`` from the metadata ``class_image_count``
    (federated loss of LVIS), ordered by category id."""
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    dataset_names = list(dataset_names)
    check_metadata_consistency("class_image_count", dataset_names)
    counts = MetadataCatalog.get(dataset_names[0]).class_image_count
    freq = torch.tensor([c["image_count"] for c in sorted(counts, key=lambda x: x["id"])])
    return freq.float() ** freq_weight_power


def gen_crop_transform_with_instance(
    crop_size: tuple[int, int], image_size: tuple[int, int], instance: dict
) -> T.CropTransform:
    """A random ``crop_size`` (h, w) crop of an ``image_size`` (h, w) image that contains the
    centre of ``instance``'s box."""
    crop_size = np.asarray(crop_size, dtype=np.int32)
    bbox = BoxMode.convert(instance["bbox"], instance["bbox_mode"], BoxMode.XYXY_ABS)
    center_yx = np.array([(bbox[1] + bbox[3]) * 0.5, (bbox[0] + bbox[2]) * 0.5])
    if image_size[0] < center_yx[0] or image_size[1] < center_yx[1]:
        raise ValueError(f"instance box centre {center_yx} (y, x) is outside image {image_size}")
    if image_size[0] < crop_size[0] or image_size[1] < crop_size[1]:
        raise ValueError(f"crop size {tuple(crop_size)} exceeds image size {image_size}")
    min_yx = np.maximum(np.floor(center_yx).astype(np.int32) - crop_size, 0)
    max_yx = np.maximum(np.asarray(image_size, dtype=np.int32) - crop_size, 0)
    max_yx = np.minimum(max_yx, np.ceil(center_yx).astype(np.int32))
    y0 = np.random.randint(min_yx[0], max_yx[0] + 1)
    x0 = np.random.randint(min_yx[1], max_yx[1] + 1)
    return T.CropTransform(int(x0), int(y0), int(crop_size[1]), int(crop_size[0]))


def build_augmentation(cfg: Any, is_train: bool) -> list[T.Augmentation]:
    """Default augmentations: ``ResizeShortestEdge`` from ``INPUT.MIN_SIZE_*``/``MAX_SIZE_*``,
    plus ``RandomFlip`` (``INPUT.RANDOM_FLIP``) in training."""
    if is_train:
        min_size = cfg.INPUT.MIN_SIZE_TRAIN
        max_size = cfg.INPUT.MAX_SIZE_TRAIN
        sample_style = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    else:
        min_size = cfg.INPUT.MIN_SIZE_TEST
        max_size = cfg.INPUT.MAX_SIZE_TEST
        sample_style = "choice"
    augmentation: list[T.Augmentation] = [T.ResizeShortestEdge(min_size, max_size, sample_style)]
    if is_train and cfg.INPUT.RANDOM_FLIP != "none":
        if cfg.INPUT.RANDOM_FLIP not in ("horizontal", "vertical"):
            raise ValueError(
                "INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got "
                f"{cfg.INPUT.RANDOM_FLIP!r}"
            )
        augmentation.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augmentation


build_transform_gen = build_augmentation
"""Deprecated alias of :func:`build_augmentation`."""

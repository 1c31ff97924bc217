"""``DatasetMapper``: a dataset dict (file name + annotations) -> the model's input dict."""

from __future__ import annotations

import copy
import logging
import pickle
from typing import Any

import numpy as np
import torch

from torchdet.config import configurable

from . import detection_utils as utils
from . import transforms as T
from .common import DataMappingError

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


def _copy_dict(dataset_dict: dict) -> dict:
    """Deep copy; through pickle, about 3x faster than ``copy.deepcopy`` on annotation lists."""
    try:
        return pickle.loads(pickle.dumps(dataset_dict, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # something unpicklable: the generic path
        return copy.deepcopy(dataset_dict)


class DatasetMapper:
    """Read the image, augment it, and build the model input (Detectron2's default mapper).

    Output dict (the input dict's other keys are kept):

    - ``image`` (Tensor[C, H, W]): after augmentation, dtype of the decoded image (uint8 for
      PIL modes and "BGR"), channels in ``image_format``.
    - ``instances`` (training only): ``gt_boxes``, ``gt_classes``, and ``gt_masks`` /
      ``gt_keypoints`` when enabled; crowd annotations and empty instances removed.
    - ``sem_seg`` (Tensor[H, W] int64) when the dict has ``sem_seg_file_name``.
    - ``proposals`` (Instances) when ``precomputed_proposal_topk`` is set.

    Errors raised while mapping are re-raised as ``DataMappingError`` naming the file and the
    image id.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: list[T.Augmentation | T.Transform],
        image_format: str,
        use_instance_mask: bool = False,
        use_keypoint: bool = False,
        instance_mask_format: str = "polygon",
        keypoint_hflip_indices: np.ndarray | None = None,
        precomputed_proposal_topk: int | None = None,
        recompute_boxes: bool = False,
    ):
        """
        Args:
            is_train: training mode (keeps and transforms annotations).
            augmentations: applied in order to the image and annotations.
            image_format: format for :func:`detection_utils.read_image` ("BGR", "RGB", ...).
            use_instance_mask: keep segmentation as ``gt_masks``.
            use_keypoint: keep keypoints as ``gt_keypoints``.
            instance_mask_format: "polygon" or "bitmask".
            keypoint_hflip_indices: see :func:`detection_utils.create_keypoint_hflip_indices`.
            precomputed_proposal_topk: keep this many precomputed proposals, if set.
            recompute_boxes: recompute ``gt_boxes`` from the masks (after a crop, a box no longer
                encloses its cropped mask tightly); needs ``use_instance_mask``.
        """
        if recompute_boxes and not use_instance_mask:
            raise ValueError("recompute_boxes=True needs use_instance_mask=True")
        if instance_mask_format not in ("polygon", "bitmask"):
            raise ValueError(
                f"instance_mask_format must be 'polygon' or 'bitmask', got {instance_mask_format!r}"
            )
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.use_keypoint = use_keypoint
        self.keypoint_hflip_indices = keypoint_hflip_indices
        self.proposal_topk = precomputed_proposal_topk
        self.recompute_boxes = recompute_boxes
        mode = "training" if is_train else "inference"
        logger.info("[DatasetMapper] Augmentations used in %s: %s", mode, self.augmentations)

    @classmethod
    def from_config(cls, cfg: Any, is_train: bool = True) -> dict[str, Any]:
        augs = utils.build_augmentation(cfg, is_train)
        recompute_boxes = False
        if cfg.INPUT.CROP.ENABLED and is_train:
            augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
            recompute_boxes = cfg.MODEL.MASK_ON
        ret = {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "use_keypoint": cfg.MODEL.KEYPOINT_ON,
            "recompute_boxes": recompute_boxes,
        }
        if cfg.MODEL.KEYPOINT_ON:
            ret["keypoint_hflip_indices"] = utils.create_keypoint_hflip_indices(cfg.DATASETS.TRAIN)
        if cfg.MODEL.LOAD_PROPOSALS:
            ret["precomputed_proposal_topk"] = (
                cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN
                if is_train
                else cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST
            )
        return ret

    def _transform_annotations(
        self, dataset_dict: dict, transforms: T.TransformList, image_shape: tuple[int, int]
    ) -> None:
        for anno in dataset_dict["annotations"]:
            if not self.use_instance_mask:
                anno.pop("segmentation", None)
            if not self.use_keypoint:
                anno.pop("keypoints", None)
        annos = [
            utils.transform_instance_annotations(
                obj, transforms, image_shape, keypoint_hflip_indices=self.keypoint_hflip_indices
            )
            for obj in dataset_dict.pop("annotations")
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        dataset_dict["instances"] = utils.filter_empty_instances(instances)

    def __call__(self, dataset_dict: dict) -> dict:
        """Map one dataset dict (it is deep-copied, not modified)."""
        try:
            return self._map(_copy_dict(dataset_dict))
        except DataMappingError:
            raise
        except Exception as e:
            raise DataMappingError(
                f"DatasetMapper failed on file_name={dataset_dict.get('file_name', '?')!r}, "
                f"image_id={dataset_dict.get('image_id', '?')!r}: {type(e).__name__}: {e}"
            ) from e

    def _map(self, dataset_dict: dict) -> dict:
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        if "sem_seg_file_name" in dataset_dict:
            sem_seg_gt = utils.read_image(dataset_dict.pop("sem_seg_file_name"), "L").squeeze(2)
        else:
            sem_seg_gt = None

        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        transforms = self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]  # (h, w)
        # HWC -> CHW; the copy makes it contiguous (and writable: PIL arrays are read-only).
        dataset_dict["image"] = torch.as_tensor(np.array(image.transpose(2, 0, 1), order="C"))
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))

        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            dataset_dict.pop("sem_seg_file_name", None)
            return dataset_dict

        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict

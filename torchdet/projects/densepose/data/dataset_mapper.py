"""The DensePose training mapper: the core instance mapping plus ``gt_densepose``."""

from __future__ import annotations

import copy

import numpy as np
import torch

from torchdet.config import configurable
from torchdet.data import detection_utils as utils
from torchdet.data import transforms as T

from ..structures import DensePoseDataRelative, DensePoseList

__all__ = ["DensePoseDatasetMapper"]


class DensePoseDatasetMapper:
    """Reads and augments the image; in training, turns the non-crowd annotations into
    ``instances`` with ``gt_boxes``, ``gt_classes`` and ``gt_densepose`` (a ``DensePoseList``
    of ``DensePoseDataRelative``, None for instances without DensePose keys).

    Args:
        augmentations: applied to the image (a horizontal flip mirrors the DensePose data; with
            ``densepose_transform_data`` it also swaps left/right patches and U/V).
        image_format: ``INPUT.FORMAT``.
        is_train: keep annotations.
    """

    @configurable
    def __init__(
        self,
        *,
        augmentations: list,
        image_format: str,
        is_train: bool = True,
        densepose_transform_data: dict | None = None,
    ) -> None:
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.is_train = is_train
        self.densepose_transform_data = densepose_transform_data

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        return {
            "augmentations": utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "is_train": is_train,
        }

    def _densepose(self, anno: dict, transforms) -> DensePoseDataRelative | None:
        if DensePoseDataRelative.X_KEY not in anno:
            return None
        data = DensePoseDataRelative(anno, cleanup=True)
        data.apply_transform(transforms, self.densepose_transform_data)
        return data

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        annos = []
        densepose = []
        for obj in dataset_dict.pop("annotations", []):
            if obj.get("iscrowd", 0):
                continue
            obj.pop("segmentation", None)
            obj.pop("keypoints", None)
            densepose.append(self._densepose(obj, transforms))
            annos.append(utils.transform_instance_annotations(obj, transforms, image_shape))
        instances = utils.annotations_to_instances(annos, image_shape)
        if any(d is not None for d in densepose):
            instances.gt_densepose = DensePoseList(densepose)
        dataset_dict["instances"] = instances[instances.gt_boxes.nonempty()]
        return dataset_dict

"""The training mapper of Panoptic-DeepLab: image and panoptic PNG augmented together, then
the targets of ``PanopticDeepLabTargetGenerator``."""

from __future__ import annotations

import copy

import numpy as np
import torch

from torchdet.config import configurable
from torchdet.data import MetadataCatalog
from torchdet.data import detection_utils as utils
from torchdet.data import transforms as T

from .target_generator import PanopticDeepLabTargetGenerator

__all__ = ["PanopticDeeplabDatasetMapper"]


def _rgb2id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours (H, W, 3) to segment ids ``R + 256 G + 256^2 B``."""
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


class PanopticDeeplabDatasetMapper:
    """Maps a COCO-panoptic dataset dict (``file_name``, ``pan_seg_file_name``,
    ``segments_info`` with contiguous ``category_id``) to the model's training input."""

    @configurable
    def __init__(
        self,
        *,
        augmentations: list,
        image_format: str,
        panoptic_target_generator: PanopticDeepLabTargetGenerator,
    ) -> None:
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.panoptic_target_generator = panoptic_target_generator

    @classmethod
    def from_config(cls, cfg) -> dict:
        augs = [
            T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        ]
        if cfg.INPUT.CROP.ENABLED:
            augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        augs.append(T.RandomFlip())
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        generator = PanopticDeepLabTargetGenerator(
            ignore_label=meta.ignore_label,
            thing_ids=list(meta.thing_dataset_id_to_contiguous_id.values()),
            sigma=cfg.INPUT.GAUSSIAN_SIGMA,
            ignore_stuff_in_offset=cfg.INPUT.IGNORE_STUFF_IN_OFFSET,
            small_instance_area=cfg.INPUT.SMALL_INSTANCE_AREA,
            small_instance_weight=cfg.INPUT.SMALL_INSTANCE_WEIGHT,
            ignore_crowd_in_semantic=cfg.INPUT.IGNORE_CROWD_IN_SEMANTIC,
        )
        return {
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "panoptic_target_generator": generator,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        for key in ("file_name", "pan_seg_file_name", "segments_info"):
            if key not in dataset_dict:
                raise KeyError(
                    f"PanopticDeeplabDatasetMapper: dataset dict of "
                    f"{dataset_dict.get('file_name', dataset_dict.get('image_id'))!r} has no "
                    f"{key!r}"
                )
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        pan_seg_gt = utils.read_image(dataset_dict.pop("pan_seg_file_name"), "RGB")
        # The panoptic PNG goes through the augmentations as a segmentation map (nearest).
        aug_input = T.AugInput(image, sem_seg=pan_seg_gt)
        self.augmentations(aug_input)
        image, pan_seg_gt = aug_input.image, aug_input.sem_seg
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        targets = self.panoptic_target_generator(_rgb2id(pan_seg_gt), dataset_dict["segments_info"])
        dataset_dict.update(targets)
        return dataset_dict

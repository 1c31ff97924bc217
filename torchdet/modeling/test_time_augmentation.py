"""Test-time augmentation of R-CNN models: run the model on resized / flipped copies of each
image, merge the boxes with NMS, and average the masks predicted for the merged boxes."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torchdet.config import configurable
from torchdet.data.detection_utils import read_image
from torchdet.data.transforms import (
    HFlipTransform,
    NoOpTransform,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    apply_augmentations,
)
from torchdet.structures import Boxes, Instances

from .meta_arch import GeneralizedRCNN
from .postprocessing import detector_postprocess
from .roi_heads.fast_rcnn import fast_rcnn_inference_single_image

__all__ = ["DatasetMapperTTA", "GeneralizedRCNNWithTTA"]


class DatasetMapperTTA:
    """Turn one model input into its augmented copies: for each of ``min_sizes`` a
    shortest-edge resize, and its horizontal flip if ``flip``.

    Each output dict is a deep copy of the input with ``image`` replaced and ``transforms``
    (a ``TransformList`` from the *original* image, ``height`` x ``width``, to the new one).
    """

    @configurable
    def __init__(self, min_sizes: Sequence[int], max_size: int, flip: bool):
        """
        Args:
            min_sizes: the shortest-edge sizes to resize to.
            max_size: the longest edge is capped at this.
            flip: also add the horizontally flipped copy of each size.
        """
        self.min_sizes = list(min_sizes)
        self.max_size = max_size
        self.flip = flip

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            "min_sizes": cfg.TEST.AUG.MIN_SIZES,
            "max_size": cfg.TEST.AUG.MAX_SIZE,
            "flip": cfg.TEST.AUG.FLIP,
        }

    def __call__(self, dataset_dict: dict) -> list[dict]:
        """
        Args:
            dataset_dict (dict): a model input with ``image`` (Tensor[C, H, W], possibly
                already resized), ``height`` and ``width`` (the original size).

        Returns:
            list[dict]: the augmented inputs, each with ``transforms``.
        """
        for key in ("image", "height", "width"):
            if key not in dataset_dict:
                raise KeyError(f"DatasetMapperTTA: the input dict needs '{key}'")
        numpy_image = dataset_dict["image"].permute(1, 2, 0).numpy()
        shape = numpy_image.shape
        orig_shape = (dataset_dict["height"], dataset_dict["width"])
        if shape[:2] != orig_shape:
            # The given image was resized from the original: start the transforms there.
            pre_tfm = ResizeTransform(orig_shape[0], orig_shape[1], shape[0], shape[1])
        else:
            pre_tfm = NoOpTransform()

        aug_candidates = []  # each a list of augmentations
        for min_size in self.min_sizes:
            resize = ResizeShortestEdge(min_size, self.max_size)
            aug_candidates.append([resize])
            if self.flip:
                aug_candidates.append([resize, RandomFlip(prob=1.0)])

        ret = []
        for aug in aug_candidates:
            new_image, tfms = apply_augmentations(aug, np.copy(numpy_image))
            torch_image = torch.from_numpy(np.ascontiguousarray(new_image.transpose(2, 0, 1)))
            dic = copy.deepcopy(dataset_dict)
            dic["transforms"] = pre_tfm + tfms
            dic["image"] = torch_image
            ret.append(dic)
        return ret


class GeneralizedRCNNWithTTA(nn.Module):
    """A ``GeneralizedRCNN`` with test-time augmentation; call it like the model in eval
    mode (``list[dict]`` -> ``list[{"instances": Instances}]``). Keypoints and precomputed
    proposals are not supported."""

    def __init__(
        self,
        cfg,
        model: GeneralizedRCNN,
        tta_mapper: DatasetMapperTTA | None = None,
        batch_size: int = 3,
    ):
        """
        Args:
            cfg: the model's config (``MODEL.MASK_ON``, ``ROI_HEADS.NUM_CLASSES``,
                ``NMS_THRESH_TEST``, ``TEST.DETECTIONS_PER_IMAGE``, ``TEST.AUG``).
            model: the model (a ``DistributedDataParallel`` is unwrapped).
            tta_mapper: makes the augmented copies; default ``DatasetMapperTTA(cfg)``.
            batch_size: augmented images per model call.
        """
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not isinstance(model, GeneralizedRCNN):
            raise TypeError(f"TTA is only supported on GeneralizedRCNN, got {type(model).__name__}")
        self.cfg = cfg.clone()
        if self.cfg.MODEL.KEYPOINT_ON:
            raise ValueError("TTA for keypoints is not supported (MODEL.KEYPOINT_ON)")
        if self.cfg.MODEL.LOAD_PROPOSALS:
            raise ValueError("TTA for precomputed proposals is not supported (LOAD_PROPOSALS)")
        self.model = model
        if tta_mapper is None:
            tta_mapper = DatasetMapperTTA(cfg)
        self.tta_mapper = tta_mapper
        self.batch_size = batch_size

    @contextmanager
    def _turn_off_roi_heads(self, attrs: Sequence[str]) -> Iterator[None]:
        """Temporarily set the given flags (e.g. ``mask_on``) of the RoI heads to False."""
        roi_heads = self.model.roi_heads
        old = {attr: getattr(roi_heads, attr) for attr in attrs if hasattr(roi_heads, attr)}
        for attr in old:
            setattr(roi_heads, attr, False)
        try:
            yield
        finally:
            for attr, value in old.items():
                setattr(roi_heads, attr, value)

    def _batch_inference(
        self, batched_inputs: list[dict], detected_instances: list[Instances] | None = None
    ) -> list[Instances]:
        """The model's raw outputs (input resolution) of every input, ``batch_size`` at a
        time; with ``detected_instances``, only masks for the given boxes."""
        outputs = []
        for i in range(0, len(batched_inputs), self.batch_size):
            inputs = batched_inputs[i : i + self.batch_size]
            instances = (
                None if detected_instances is None else detected_instances[i : i + self.batch_size]
            )
            outputs.extend(self.model.inference(inputs, instances, do_postprocess=False))
        return outputs

    def __call__(self, batched_inputs: list[dict]) -> list[dict]:
        """
        Args:
            batched_inputs (list[dict]): model inputs (``image`` or ``file_name``, optional
                ``height``/``width``).

        Returns:
            list[dict]: ``{"instances": Instances}`` per image, at the original size.
        """

        def _maybe_read_image(dataset_dict: dict) -> dict:
            ret = copy.copy(dataset_dict)
            if "image" not in ret:
                image = read_image(ret.pop("file_name"), self.model.input_format)
                ret["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            if "height" not in ret and "width" not in ret:
                ret["height"] = ret["image"].shape[1]
                ret["width"] = ret["image"].shape[2]
            return ret

        return [self._inference_one_image(_maybe_read_image(x)) for x in batched_inputs]

    def _inference_one_image(self, input: dict) -> dict:
        orig_shape = (input["height"], input["width"])
        augmented_inputs, tfms = self._get_augmented_inputs(input)
        # Boxes first, from every augmented copy, without masks.
        with self._turn_off_roi_heads(["mask_on", "keypoint_on"]):
            all_boxes, all_scores, all_classes = self._get_augmented_boxes(augmented_inputs, tfms)
        merged_instances = self._merge_detections(all_boxes, all_scores, all_classes, orig_shape)

        if self.cfg.MODEL.MASK_ON:
            # Masks of the merged boxes, predicted on every copy and averaged.
            augmented_instances = self._rescale_detected_boxes(
                augmented_inputs, merged_instances, tfms
            )
            outputs = self._batch_inference(augmented_inputs, augmented_instances)
            del augmented_inputs, augmented_instances
            merged_instances.pred_masks = self._reduce_pred_masks(outputs, tfms)
            merged_instances = detector_postprocess(merged_instances, *orig_shape)
        return {"instances": merged_instances}

    def _get_augmented_inputs(self, input: dict) -> tuple[list[dict], list]:
        augmented_inputs = self.tta_mapper(input)
        tfms = [x.pop("transforms") for x in augmented_inputs]
        return augmented_inputs, tfms

    def _get_augmented_boxes(self, augmented_inputs: list[dict], tfms: list):
        """All detections of all copies, boxes mapped back to the original image."""
        outputs = self._batch_inference(augmented_inputs)
        all_boxes = []
        all_scores = []
        all_classes = []
        for output, tfm in zip(outputs, tfms):
            pred_boxes = output.pred_boxes.tensor
            original_pred_boxes = tfm.inverse().apply_box(pred_boxes.cpu().numpy())
            all_boxes.append(
                torch.from_numpy(np.asarray(original_pred_boxes, dtype=np.float32)).to(
                    pred_boxes.device
                )
            )
            all_scores.append(output.scores)
            all_classes.append(output.pred_classes)
        return torch.cat(all_boxes, dim=0), torch.cat(all_scores), torch.cat(all_classes)

    def _merge_detections(
        self,
        all_boxes: torch.Tensor,
        all_scores: torch.Tensor,
        all_classes: torch.Tensor,
        shape_hw: tuple[int, int],
    ) -> Instances:
        """Per-class NMS over the union of the detections of all copies."""
        num_boxes = len(all_boxes)
        num_classes = self.cfg.MODEL.ROI_HEADS.NUM_CLASSES
        # One score column per class plus background, as fast_rcnn_inference expects.
        all_scores_2d = torch.zeros(num_boxes, num_classes + 1, device=all_boxes.device)
        all_scores_2d[torch.arange(num_boxes, device=all_boxes.device), all_classes] = all_scores
        merged_instances, _ = fast_rcnn_inference_single_image(
            all_boxes,
            all_scores_2d,
            shape_hw,
            1e-8,
            self.cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            self.cfg.TEST.DETECTIONS_PER_IMAGE,
        )
        return merged_instances

    def _rescale_detected_boxes(
        self, augmented_inputs: list[dict], merged_instances: Instances, tfms: list
    ) -> list[Instances]:
        """The merged detections in each augmented copy's coordinates."""
        augmented_instances = []
        for input, tfm in zip(augmented_inputs, tfms):
            pred_boxes = merged_instances.pred_boxes.tensor.cpu().numpy()
            pred_boxes = torch.from_numpy(np.asarray(tfm.apply_box(pred_boxes), dtype=np.float32))
            augmented_instances.append(
                Instances(
                    image_size=input["image"].shape[1:3],
                    pred_boxes=Boxes(pred_boxes),
                    pred_classes=merged_instances.pred_classes,
                    scores=merged_instances.scores,
                )
            )
        return augmented_instances

    def _reduce_pred_masks(self, outputs: list[Instances], tfms: list) -> torch.Tensor:
        """Average the RoI masks of all copies. RoI masks do not depend on the resize; a
        flipped copy's masks are flipped back."""
        masks = []
        for output, tfm in zip(outputs, tfms):
            m = output.pred_masks
            if any(isinstance(t, HFlipTransform) for t in tfm.transforms):
                m = m.flip(dims=[3])
            masks.append(m)
        return torch.stack(masks, dim=0).mean(dim=0)

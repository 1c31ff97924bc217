"""Panoptic FPN (Kirillov et al., 2019): Mask R-CNN plus a semantic head, combined into one
panoptic segmentation."""

from __future__ import annotations

import logging

import torch
from torch import nn

from torchdet.config import configurable
from torchdet.structures import Instances

from ..postprocessing import detector_postprocess, sem_seg_postprocess
from .build import META_ARCH_REGISTRY
from .rcnn import GeneralizedRCNN, _check_batched_inputs
from .semantic_seg import _pad_targets, build_sem_seg_head

__all__ = ["PanopticFPN", "combine_semantic_and_instance_outputs"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class PanopticFPN(GeneralizedRCNN):
    """A ``GeneralizedRCNN`` with a semantic segmentation head on the same features.

    Inference returns, per image, ``instances``, ``sem_seg`` (Tensor[C, H, W] logits) and, if
    combining is on, ``panoptic_seg`` = ``(Tensor[H, W] int32 segment ids, segments_info)``.
    """

    @configurable
    def __init__(
        self,
        *,
        sem_seg_head: nn.Module,
        combine_overlap_thresh: float = 0.5,
        combine_stuff_area_thresh: float = 4096,
        combine_instances_score_thresh: float = 0.5,
        **kwargs,
    ):
        """
        Args:
            sem_seg_head: the semantic head (class 0 is "things" for combining).
            combine_overlap_thresh: an instance overlapping the already placed ones by more
                than this share of its area is dropped.
            combine_stuff_area_thresh: stuff regions smaller than this (pixels) are dropped.
            combine_instances_score_thresh: instances below this score are not placed.
            kwargs: passed to ``GeneralizedRCNN``.
        """
        super().__init__(**kwargs)
        self.sem_seg_head = sem_seg_head
        self.combine_overlap_thresh = combine_overlap_thresh
        self.combine_stuff_area_thresh = combine_stuff_area_thresh
        self.combine_instances_score_thresh = combine_instances_score_thresh

    @classmethod
    def from_config(cls, cfg) -> dict:
        ret = super().from_config(cfg)
        ret.update(
            {
                "combine_overlap_thresh": cfg.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH,
                "combine_stuff_area_thresh": cfg.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT,
                "combine_instances_score_thresh": (
                    cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH
                ),
            }
        )
        ret["sem_seg_head"] = build_sem_seg_head(cfg, ret["backbone"].output_shape())
        if not cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED:
            logger.warning(
                "PANOPTIC_FPN.COMBINED.ENABLED is no longer used: the model always returns "
                "instances, sem_seg and panoptic_seg; use what you need."
            )

        w = cfg.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT
        if w != 1.0:

            def update_weight(x):
                if isinstance(x, dict):
                    return {k: v * w for k, v in x.items()}
                return x * w

            roi_heads = ret["roi_heads"]
            roi_heads.box_predictor.loss_weight = update_weight(roi_heads.box_predictor.loss_weight)
            roi_heads.mask_head.loss_weight = update_weight(roi_heads.mask_head.loss_weight)
        return ret

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs (list[dict]): as for ``GeneralizedRCNN``, plus ``sem_seg``
                (Tensor[H, W] int64) in training.

        Returns:
            In training the losses (``loss_sem_seg``, RPN and RoI-head losses); at
            inference, per image, ``{"sem_seg", "instances", "panoptic_seg"}``.
        """
        if not self.training:
            return self.inference(batched_inputs)
        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)

        for key in ("sem_seg", "instances"):
            if key not in batched_inputs[0]:
                raise KeyError(f"PanopticFPN needs '{key}' in its inputs to train")
        gt_sem_seg = _pad_targets(
            batched_inputs, self.device, self.backbone, self.sem_seg_head.ignore_value
        )
        _, sem_seg_losses = self.sem_seg_head(features, gt_sem_seg)

        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)

        losses = sem_seg_losses
        losses.update(proposal_losses)
        losses.update(detector_losses)
        return losses

    def inference(self, batched_inputs: list[dict], do_postprocess: bool = True):
        """
        Returns:
            With ``do_postprocess``, per image ``{"sem_seg", "instances", "panoptic_seg"}`` at
            the output size; otherwise ``(detector_results, sem_seg_results)`` at the input
            resolution.
        """
        if self.training:
            raise RuntimeError("PanopticFPN.inference needs eval mode: call model.eval()")
        _check_batched_inputs(batched_inputs, type(self).__name__)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        sem_seg_results, _ = self.sem_seg_head(features, None)
        proposals, _ = self.proposal_generator(images, features, None)
        detector_results, _ = self.roi_heads(images, features, proposals, None)

        if not do_postprocess:
            return detector_results, sem_seg_results

        processed_results = []
        for sem_seg_result, detector_result, input_per_image, image_size in zip(
            sem_seg_results, detector_results, batched_inputs, images.image_sizes
        ):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            sem_seg_r = sem_seg_postprocess(sem_seg_result, image_size, height, width)
            detector_r = detector_postprocess(detector_result, height, width)
            panoptic_r = combine_semantic_and_instance_outputs(
                detector_r,
                sem_seg_r.argmax(dim=0),
                self.combine_overlap_thresh,
                self.combine_stuff_area_thresh,
                self.combine_instances_score_thresh,
            )
            processed_results.append(
                {"sem_seg": sem_seg_r, "instances": detector_r, "panoptic_seg": panoptic_r}
            )
        return processed_results


def combine_semantic_and_instance_outputs(
    instance_results: Instances,
    semantic_results: torch.Tensor,
    overlap_threshold: float,
    stuff_area_thresh: float,
    instances_score_thresh: float,
) -> tuple[torch.Tensor, list[dict]]:
    """Paint instances (by decreasing score), then stuff regions, into one segment map.

    An instance is skipped if more than ``overlap_threshold`` of its mask is already
    covered; otherwise it takes its uncovered pixels. Then each semantic class other than 0
    ("things") takes its still-empty pixels if they are at least ``stuff_area_thresh``.

    Args:
        instance_results (Instances): ``scores``, ``pred_classes``, ``pred_masks``
            (Tensor[R, H, W] bool) at the output size.
        semantic_results (Tensor[H, W] int64): the semantic argmax.
        overlap_threshold, stuff_area_thresh, instances_score_thresh: see above.

    Returns:
        panoptic_seg (Tensor[H, W] int32): segment id per pixel, 0 for void.
        segments_info (list[dict]): per segment, ``id``, ``isthing``, ``category_id`` and
        ``score`` / ``instance_id`` (things) or ``area`` (stuff).
    """
    panoptic_seg = torch.zeros_like(semantic_results, dtype=torch.int32)
    segments_info = []
    current_segment_id = 0

    # Painting is sequential (each instance sees the earlier ones), but only instances
    # above the score threshold take part, and all statistics are fetched in one transfer.
    scores = instance_results.scores
    sorted_inds = torch.argsort(-scores)
    sorted_inds = sorted_inds[scores[sorted_inds] >= instances_score_thresh]
    if len(sorted_inds):
        instance_masks = instance_results.pred_masks[sorted_inds].to(
            dtype=torch.bool, device=panoptic_seg.device
        )
        sorted_scores = scores[sorted_inds].tolist()
        sorted_classes = instance_results.pred_classes[sorted_inds].tolist()
        mask_areas = instance_masks.flatten(1).sum(dim=1).tolist()
        covered = torch.zeros_like(panoptic_seg, dtype=torch.bool)
        for k, inst_id in enumerate(sorted_inds.tolist()):
            mask_area = mask_areas[k]
            if mask_area == 0:
                continue
            mask = instance_masks[k]
            intersect_area = (mask & covered).sum().item()
            if intersect_area * 1.0 / mask_area > overlap_threshold:
                continue
            if intersect_area > 0:
                mask = mask & ~covered
            current_segment_id += 1
            panoptic_seg[mask] = current_segment_id
            covered |= mask
            segments_info.append(
                {
                    "id": current_segment_id,
                    "isthing": True,
                    "score": sorted_scores[k],
                    "category_id": sorted_classes[k],
                    "instance_id": inst_id,
                }
            )

    # Stuff: every semantic class (0 is "things") in the still-empty pixels.
    empty = panoptic_seg == 0
    labels = semantic_results[empty]
    num_labels = int(semantic_results.max().item()) + 1 if semantic_results.numel() else 0
    areas = torch.bincount(labels.flatten(), minlength=num_labels).tolist()
    for semantic_label in torch.unique(semantic_results).tolist():
        if semantic_label == 0:
            continue
        mask_area = areas[semantic_label]
        if mask_area < stuff_area_thresh:
            continue
        current_segment_id += 1
        panoptic_seg[(semantic_results == semantic_label) & empty] = current_segment_id
        segments_info.append(
            {
                "id": current_segment_id,
                "isthing": False,
                "category_id": semantic_label,
                "area": mask_area,
            }
        )
    return panoptic_seg, segments_info

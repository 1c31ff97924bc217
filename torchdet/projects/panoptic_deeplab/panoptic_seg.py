"""The Panoptic-DeepLab meta-architecture ("Panoptic-DeepLab: A Simple, Strong, and Fast
Baseline for Bottom-Up Panoptic Segmentation", Cheng et al. 2020).

Shape shorthand: N images, C semantic classes, H x W the padded input, h x w an output image.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.data import MetadataCatalog
from torchdet.modeling import (
    META_ARCH_REGISTRY,
    build_backbone,
    build_sem_seg_head,
    sem_seg_postprocess,
)
from torchdet.structures import BitMasks, ImageList, Instances

from .heads import build_ins_embed_branch
from .post_processing import get_panoptic_segmentation

__all__ = ["PanopticDeepLab"]


def _batch(batched_inputs: list[dict], key: str, device, size_divisibility: int, pad=0.0):
    tensors = [x[key].to(device) for x in batched_inputs]
    return ImageList.from_tensors(tensors, size_divisibility, pad).tensor


@META_ARCH_REGISTRY.register()
class PanopticDeepLab(nn.Module):
    """Backbone, semantic decoder and instance (centre + offset) decoder; at inference the
    panoptic map is grouped bottom-up (see ``post_processing``).

    The thing classes and label divisor come from the metadata of ``DATASETS.TRAIN[0]``
    (``thing_dataset_id_to_contiguous_id`` and ``label_divisor``).

    Inference returns, per image, ``sem_seg`` (Tensor[C, h, w] logits), ``panoptic_seg``
    ``(Tensor[h, w] int32-valued: class * label_divisor + instance id, stuff with id 0, -1
    void, None)`` and, with ``PREDICT_INSTANCES``, ``instances`` (one per thing segment, score
    = mean semantic probability x centre score).
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.sem_seg_head = build_sem_seg_head(cfg, self.backbone.output_shape())
        self.ins_embed_head = build_ins_embed_branch(cfg, self.backbone.output_shape())
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)
        if not cfg.DATASETS.TRAIN:
            raise ValueError(
                "PanopticDeepLab reads its thing classes from DATASETS.TRAIN[0]; empty"
            )
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        for key in ("thing_dataset_id_to_contiguous_id", "label_divisor"):
            if not hasattr(meta, key):
                raise KeyError(
                    f"PanopticDeepLab: metadata of {cfg.DATASETS.TRAIN[0]!r} has no {key!r} "
                    "(register it with register_coco_panoptic)"
                )
        self.thing_ids = sorted(meta.thing_dataset_id_to_contiguous_id.values())
        self.label_divisor = meta.label_divisor
        pdl = cfg.MODEL.PANOPTIC_DEEPLAB
        self.stuff_area = pdl.STUFF_AREA
        self.threshold = pdl.CENTER_THRESHOLD
        self.nms_kernel = pdl.NMS_KERNEL
        self.top_k = pdl.TOP_K_INSTANCE
        self.predict_instances = pdl.PREDICT_INSTANCES
        if cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV != pdl.USE_DEPTHWISE_SEPARABLE_CONV:
            raise ValueError(
                "MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV and "
                "MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV must be equal"
            )
        self.size_divisibility = pdl.SIZE_DIVISIBILITY
        self.benchmark_network_speed = pdl.BENCHMARK_NETWORK_SPEED

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: list[dict]):
        """
        Args:
            batched_inputs: dicts with ``image`` (Tensor[3, H, W]); in training also
                ``sem_seg``, ``sem_seg_weights``, ``center``, ``center_weights``, ``offset``,
                ``offset_weights`` (see ``PanopticDeepLabTargetGenerator``); optionally
                ``height``/``width`` of the output.

        Returns:
            dict of losses in training, else ``list[dict]`` (see the class docstring).
        """
        if not isinstance(batched_inputs, (list, tuple)) or not batched_inputs:
            raise TypeError("PanopticDeepLab takes a non-empty list of dicts")
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        # A fixed divisibility keeps ASPP's pooling kernel dividing the feature size.
        size_div = (
            self.size_divisibility
            if self.size_divisibility > 0
            else self.backbone.size_divisibility
        )
        images = ImageList.from_tensors(images, size_div)
        features = self.backbone(images.tensor)

        losses = {}
        targets = weights = None
        if "sem_seg" in batched_inputs[0]:
            targets = _batch(
                batched_inputs, "sem_seg", self.device, size_div, self.sem_seg_head.ignore_value
            )
            if "sem_seg_weights" in batched_inputs[0]:
                weights = _batch(batched_inputs, "sem_seg_weights", self.device, size_div)
        elif self.training:
            raise KeyError("PanopticDeepLab needs 'sem_seg' (and centre/offset targets) to train")
        sem_seg_results, sem_seg_losses = self.sem_seg_head(features, targets, weights)
        losses.update(sem_seg_losses)

        center_t = center_w = offset_t = offset_w = None
        if "center" in batched_inputs[0] and "offset" in batched_inputs[0]:
            center_t = _batch(batched_inputs, "center", self.device, size_div).unsqueeze(1)
            center_w = _batch(batched_inputs, "center_weights", self.device, size_div)
            offset_t = _batch(batched_inputs, "offset", self.device, size_div)
            offset_w = _batch(batched_inputs, "offset_weights", self.device, size_div)
        elif self.training:
            raise KeyError("PanopticDeepLab needs 'center' and 'offset' targets to train")
        center_results, offset_results, center_losses, offset_losses = self.ins_embed_head(
            features, center_t, center_w, offset_t, offset_w
        )
        losses.update(center_losses)
        losses.update(offset_losses)
        if self.training:
            return losses
        if self.benchmark_network_speed:
            return []

        processed = []
        for sem, center, offset, inp, image_size in zip(
            sem_seg_results, center_results, offset_results, batched_inputs, images.image_sizes
        ):
            height = inp.get("height", image_size[0])
            width = inp.get("width", image_size[1])
            r = sem_seg_postprocess(sem, image_size, height, width)
            c = sem_seg_postprocess(center, image_size, height, width)
            o = sem_seg_postprocess(offset, image_size, height, width)
            panoptic, _ = get_panoptic_segmentation(
                r.argmax(dim=0, keepdim=True),
                c,
                o,
                thing_ids=self.thing_ids,
                label_divisor=self.label_divisor,
                stuff_area=self.stuff_area,
                void_label=-1,
                threshold=self.threshold,
                nms_kernel=self.nms_kernel,
                top_k=self.top_k,
            )
            panoptic = panoptic.squeeze(0)
            result = {"sem_seg": r, "panoptic_seg": (panoptic, None)}
            if self.predict_instances:
                instances = self._instances(panoptic, F.softmax(r, dim=0), c, (height, width))
                if instances is not None:
                    result["instances"] = instances
            processed.append(result)
        return processed

    def _instances(
        self, panoptic: torch.Tensor, semantic_prob: torch.Tensor, center: torch.Tensor, size
    ) -> Instances | None:
        """One instance per thing segment of ``panoptic`` (Tensor[h, w]), in label order."""
        labels = torch.unique(panoptic)
        labels = labels[labels != -1]
        classes = torch.div(labels, self.label_divisor, rounding_mode="floor")
        thing_ids = torch.as_tensor(self.thing_ids, device=labels.device, dtype=classes.dtype)
        is_thing = torch.isin(classes, thing_ids)
        labels, classes = labels[is_thing], classes[is_thing]
        if labels.numel() == 0:
            return None
        masks = panoptic.unsqueeze(0) == labels.view(-1, 1, 1)  # (K, h, w)
        area = masks.flatten(1).sum(dim=1).to(semantic_prob.dtype)
        maskf = masks.to(semantic_prob.dtype)
        # Mean semantic probability of the instance's class over its pixels.
        sem_scores = (semantic_prob[classes] * maskf).flatten(1).sum(dim=1) / area
        # Centre score at the (truncated) centroid of the mask.
        ys = torch.arange(masks.shape[1], device=masks.device, dtype=maskf.dtype)
        xs = torch.arange(masks.shape[2], device=masks.device, dtype=maskf.dtype)
        cy = ((maskf.sum(dim=2) * ys).sum(dim=1) / area).long()
        cx = ((maskf.sum(dim=1) * xs).sum(dim=1) / area).long()
        center_scores = center[0, cy, cx]
        instances = Instances(size)
        instances.pred_classes = classes
        instances.pred_masks = masks
        instances.scores = sem_scores * center_scores
        instances.pred_boxes = BitMasks(masks).get_bounding_boxes()
        return instances

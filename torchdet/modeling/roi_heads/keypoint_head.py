"""Keypoint heads (Keypoint R-CNN): per-RoI keypoint heatmaps, their loss and inference.

Shape shorthand: M regions over the batch, K keypoints, S x S heatmap size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.config import configurable
from torchdet.layers import ConvTranspose2d, ShapeSpec, cat, interpolate, nonzero_tuple
from torchdet.structures import Instances, heatmaps_to_keypoints
from torchdet.utils.registry import Registry

from .events import put_scalars

__all__ = [
    "BaseKeypointRCNNHead",
    "KRCNNConvDeconvUpsampleHead",
    "ROI_KEYPOINT_HEAD_REGISTRY",
    "build_keypoint_head",
    "keypoint_rcnn_inference",
    "keypoint_rcnn_loss",
]

ROI_KEYPOINT_HEAD_REGISTRY = Registry("ROI_KEYPOINT_HEAD")
ROI_KEYPOINT_HEAD_REGISTRY.__doc__ = """
Registry for keypoint heads, which predict keypoint heatmaps from pooled RoI features.

A registered object is called as ``obj(cfg, input_shape: ShapeSpec)``.
"""

# Batches skipped because no keypoint was visible in any sampled region.
_TOTAL_SKIPPED = 0


def keypoint_rcnn_loss(
    pred_keypoint_logits: torch.Tensor,
    instances: list[Instances],
    normalizer: float | None,
) -> torch.Tensor:
    """Cross-entropy over the S*S cells of each visible keypoint's heatmap.

    Args:
        pred_keypoint_logits (Tensor[M, K, S, S]): heatmap logits.
        instances (list[Instances]): per image, the regions in the order of the logits, with
            ``proposal_boxes`` and ``gt_keypoints`` (Keypoints).
        normalizer (float, optional): the loss is summed, then divided by this; ``None``
            divides by the number of visible keypoints.

    Returns:
        Tensor[]: the loss; a differentiable zero when no keypoint is visible.
    """
    heatmaps = []
    valid = []
    keypoint_side_len = pred_keypoint_logits.shape[2]
    for instances_per_image in instances:
        if len(instances_per_image) == 0:
            continue
        keypoints = instances_per_image.gt_keypoints
        heatmaps_per_image, valid_per_image = keypoints.to_heatmap(
            instances_per_image.proposal_boxes.tensor, keypoint_side_len
        )
        heatmaps.append(heatmaps_per_image.view(-1))
        valid.append(valid_per_image.view(-1))

    if len(heatmaps):
        keypoint_targets = cat(heatmaps, dim=0)
        valid = nonzero_tuple(cat(valid, dim=0).to(dtype=torch.uint8))[0]

    if len(heatmaps) == 0 or valid.numel() == 0:
        global _TOTAL_SKIPPED
        _TOTAL_SKIPPED += 1
        put_scalars(kpts_num_skipped_batches=_TOTAL_SKIPPED)
        return pred_keypoint_logits.sum() * 0

    N, K, H, W = pred_keypoint_logits.shape
    pred_keypoint_logits = pred_keypoint_logits.view(N * K, H * W)
    keypoint_loss = F.cross_entropy(
        pred_keypoint_logits[valid], keypoint_targets[valid], reduction="sum"
    )
    if normalizer is None:
        normalizer = valid.numel()
    return keypoint_loss / normalizer


def keypoint_rcnn_inference(pred_keypoint_logits: torch.Tensor, pred_instances: list[Instances]):
    """Set ``pred_keypoints`` (Tensor[Ri, K, 3]: x, y, score) and ``pred_keypoint_heatmaps``
    (Tensor[Ri, K, S, S]) of each image's detections, in place.

    Args:
        pred_keypoint_logits (Tensor[M, K, S, S]): heatmap logits, in the order of the
            concatenated ``pred_instances``.
        pred_instances (list[Instances]): per image, with ``pred_boxes``.
    """
    pred_keypoint_logits = pred_keypoint_logits.detach()
    if torch.jit.is_tracing() and len(pred_instances) == 1:
        # Decoding resizes each heatmap to its own box size (a per-RoI shape a graph cannot
        # hold): exported models return the heatmaps, torchdet.export decodes them outside.
        pred_instances[0].pred_keypoint_heatmaps = pred_keypoint_logits
        return
    bboxes_flat = cat([b.pred_boxes.tensor for b in pred_instances], dim=0)
    keypoint_results = heatmaps_to_keypoints(pred_keypoint_logits, bboxes_flat.detach())
    num_instances_per_image = [len(i) for i in pred_instances]
    # (x, y, logit, score) -> (x, y, score)
    keypoint_results = keypoint_results[:, :, [0, 1, 3]].split(num_instances_per_image, dim=0)
    heatmap_results = pred_keypoint_logits.split(num_instances_per_image, dim=0)
    for keypoint_results_per_image, heatmap_results_per_image, instances_per_image in zip(
        keypoint_results, heatmap_results, pred_instances
    ):
        instances_per_image.pred_keypoints = keypoint_results_per_image
        instances_per_image.pred_keypoint_heatmaps = heatmap_results_per_image


class BaseKeypointRCNNHead(nn.Module):
    """A keypoint head: ``layers`` (to implement) gives heatmap logits; ``forward`` adds the
    loss in training and the keypoints at inference."""

    @configurable
    def __init__(self, *, num_keypoints: int, loss_weight: float = 1.0, loss_normalizer="visible"):
        """
        Args:
            num_keypoints: K.
            loss_weight: weight of ``loss_keypoint``.
            loss_normalizer: "visible" (divide by the number of visible keypoints of the
                batch) or a number (divided by ``num_images * loss_normalizer``).
        """
        super().__init__()
        self.num_keypoints = num_keypoints
        self.loss_weight = loss_weight
        if not (loss_normalizer == "visible" or isinstance(loss_normalizer, float | int)):
            raise ValueError(f"loss_normalizer must be 'visible' or a number: {loss_normalizer}")
        self.loss_normalizer = loss_normalizer

    @classmethod
    def from_config(cls, cfg, input_shape) -> dict:
        ret = {
            "loss_weight": cfg.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT,
            "num_keypoints": cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS,
        }
        if not cfg.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS:
            # The expected number of keypoints per image, as a fixed normaliser.
            ret["loss_normalizer"] = (
                ret["num_keypoints"]
                * cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
                * cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION
            )
        else:
            ret["loss_normalizer"] = "visible"
        return ret

    def forward(self, x: torch.Tensor, instances: list[Instances]):
        """
        Args:
            x (Tensor[M, C, H, W]): the pooled features of the regions.
            instances (list[Instances]): in training, the foreground proposals with
                ``gt_keypoints``; at inference, the detections.

        Returns:
            In training, ``{"loss_keypoint": Tensor}``; at inference, ``instances`` with
            ``pred_keypoints`` and ``pred_keypoint_heatmaps``.
        """
        x = self.layers(x)
        if self.training:
            num_images = len(instances)
            normalizer = (
                None if self.loss_normalizer == "visible" else num_images * self.loss_normalizer
            )
            return {
                "loss_keypoint": keypoint_rcnn_loss(x, instances, normalizer=normalizer)
                * self.loss_weight
            }
        keypoint_rcnn_inference(x, instances)
        return instances

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """The heatmap logits (Tensor[M, K, S, S]) of the input features."""
        raise NotImplementedError


@ROI_KEYPOINT_HEAD_REGISTRY.register()
class KRCNNConvDeconvUpsampleHead(BaseKeypointRCNNHead, nn.Sequential):
    """3x3 convs with ReLU (``conv_fcn1``...), a 4x4 stride-2 transposed conv
    (``score_lowres``) to K heatmaps, then 2x bilinear upsampling (Mask R-CNN paper)."""

    @configurable
    def __init__(
        self, input_shape: ShapeSpec, *, num_keypoints: int, conv_dims: Sequence[int], **kwargs
    ):
        """
        Args:
            input_shape (ShapeSpec): the pooled features.
            num_keypoints: K.
            conv_dims: output channels of each 3x3 conv.
            kwargs: passed to ``BaseKeypointRCNNHead``.
        """
        super().__init__(num_keypoints=num_keypoints, **kwargs)
        up_scale = 2.0
        in_channels = input_shape.channels
        for idx, layer_channels in enumerate(conv_dims, 1):
            module = nn.Conv2d(in_channels, layer_channels, 3, stride=1, padding=1)
            self.add_module(f"conv_fcn{idx}", module)
            self.add_module(f"conv_fcn_relu{idx}", nn.ReLU())
            in_channels = layer_channels
        deconv_kernel = 4
        self.score_lowres = ConvTranspose2d(
            in_channels, num_keypoints, deconv_kernel, stride=2, padding=deconv_kernel // 2 - 1
        )
        self.up_scale = up_scale

        for name, param in self.named_parameters():
            if "bias" in name:
                nn.init.constant_(param, 0)
            elif "weight" in name:
                # Caffe2's MSRAFill, as for the other heads.
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        ret = super().from_config(cfg, input_shape)
        ret["input_shape"] = input_shape
        ret["conv_dims"] = cfg.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS
        return ret

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return interpolate(x, scale_factor=self.up_scale, mode="bilinear", align_corners=False)


def build_keypoint_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build the keypoint head named by ``cfg.MODEL.ROI_KEYPOINT_HEAD.NAME``."""
    name = cfg.MODEL.ROI_KEYPOINT_HEAD.NAME
    return ROI_KEYPOINT_HEAD_REGISTRY.get(name)(cfg, input_shape)

"""``DensePoseROIHeads``: the standard box head plus a DensePose branch (an optional FPN
decoder, an RoI pooler, the conv head and the chart predictor).

Shape shorthand: R detections / proposals, C channels, M the predictor's output side.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torchdet.layers import Conv2d, ShapeSpec, get_norm
from torchdet.modeling import ROI_HEADS_REGISTRY, ROIPooler, StandardROIHeads
from torchdet.modeling.roi_heads import select_foreground_proposals
from torchdet.modeling.weight_init import c2_msra_fill
from torchdet.structures import Instances, matched_pairwise_iou

from ..structures import DensePoseChartPredictorOutput
from .heads import build_densepose_head, build_densepose_predictor
from .losses import DensePoseChartLoss

__all__ = ["Decoder", "DensePoseDataFilter", "DensePoseROIHeads", "densepose_inference"]


class Decoder(nn.Module):
    """Panoptic-FPN-style merge of the FPN levels at ``DECODER_COMMON_STRIDE``: per level,
    3x3 conv + ReLU (+ 2x bilinear upsampling) until the common stride; summed; 1x1 conv."""

    def __init__(self, cfg, input_shape: dict[str, ShapeSpec], in_features: list[str]) -> None:
        super().__init__()
        h = cfg.MODEL.ROI_DENSEPOSE_HEAD
        self.in_features = list(in_features)
        conv_dims, norm = h.DECODER_CONV_DIMS, h.DECODER_NORM
        self.common_stride = h.DECODER_COMMON_STRIDE
        self.scale_heads = []
        for f in self.in_features:
            stride, channels = input_shape[f].stride, input_shape[f].channels
            ops: list[nn.Module] = []
            length = max(1, int(np.log2(stride) - np.log2(self.common_stride)))
            for k in range(length):
                conv = Conv2d(
                    channels if k == 0 else conv_dims,
                    conv_dims,
                    kernel_size=3,
                    padding=1,
                    bias=not norm,
                    norm=get_norm(norm, conv_dims),
                    activation=F.relu,
                )
                c2_msra_fill(conv)
                ops.append(conv)
                if stride != self.common_stride:
                    ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*ops))
            self.add_module(f, self.scale_heads[-1])
        self.predictor = Conv2d(conv_dims, h.DECODER_NUM_CLASSES, kernel_size=1)
        c2_msra_fill(self.predictor)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Args: features: the ``in_features`` maps, finest first. Returns the merged map."""
        x = self.scale_heads[0](features[0])
        for head, feature in zip(self.scale_heads[1:], features[1:]):
            x = x + head(feature)
        return self.predictor(x)


class DensePoseDataFilter:
    """Training proposals for the DensePose branch: those with IoU > ``FG_IOU_THRESHOLD`` with
    their matched ground truth and a DensePose annotation (``gt_densepose`` not None)."""

    def __init__(self, cfg) -> None:
        self.iou_threshold = cfg.MODEL.ROI_DENSEPOSE_HEAD.FG_IOU_THRESHOLD

    @torch.no_grad()
    def __call__(self, proposals_with_targets: list[Instances]) -> list[Instances]:
        filtered = []
        for proposals in proposals_with_targets:
            if not proposals.has("gt_densepose"):
                continue
            iou = matched_pairwise_iou(proposals.gt_boxes, proposals.proposal_boxes)
            proposals = proposals[iou > self.iou_threshold]
            keep = [i for i, dp in enumerate(proposals.gt_densepose) if dp is not None]
            if len(keep) != len(proposals):
                proposals = proposals[torch.as_tensor(keep, dtype=torch.long)]
            filtered.append(proposals)
        return filtered


def densepose_inference(
    outputs: DensePoseChartPredictorOutput | None, detections: list[Instances]
) -> None:
    """Split the batched predictor outputs into ``pred_densepose`` of each image's instances
    (in place; an image without detection gets an empty output)."""
    k = 0
    for instances in detections:
        n = len(instances)
        if outputs is None:
            continue
        instances.pred_densepose = outputs[k : k + n]
        k += n


@ROI_HEADS_REGISTRY.register()
class DensePoseROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with a DensePose branch (``MODEL.DENSEPOSE_ON``).

    At inference each detection gets ``pred_densepose`` (a ``DensePoseChartPredictorOutput``
    over its box); in training the branch adds ``loss_densepose_{I, U, V, S}``.
    """

    def __init__(self, cfg, input_shape: dict[str, ShapeSpec]) -> None:
        super().__init__(cfg, input_shape)
        self.densepose_on = cfg.MODEL.DENSEPOSE_ON
        if not self.densepose_on:
            return
        h = cfg.MODEL.ROI_DENSEPOSE_HEAD
        self.densepose_data_filter = DensePoseDataFilter(cfg)
        self.use_decoder = h.DECODER_ON
        if self.use_decoder:
            scales = (1.0 / input_shape[self.in_features[0]].stride,)
            self.decoder = Decoder(cfg, input_shape, self.in_features)
            in_channels = h.DECODER_NUM_CLASSES
        else:
            scales = tuple(1.0 / input_shape[k].stride for k in self.in_features)
            in_channels = input_shape[self.in_features[0]].channels
        self.densepose_pooler = ROIPooler(
            output_size=h.POOLER_RESOLUTION,
            scales=scales,
            sampling_ratio=h.POOLER_SAMPLING_RATIO,
            pooler_type=h.POOLER_TYPE,
        )
        self.densepose_head = build_densepose_head(cfg, in_channels)
        self.densepose_predictor = build_densepose_predictor(
            cfg, self.densepose_head.n_out_channels
        )
        self.densepose_losses = DensePoseChartLoss.from_cfg(cfg)

    def _densepose_outputs(self, features_list, boxes) -> DensePoseChartPredictorOutput | None:
        if self.use_decoder:
            features_list = [self.decoder(features_list)]
        features_dp = self.densepose_pooler(features_list, boxes)
        if features_dp.shape[0] == 0:
            return None
        return self.densepose_predictor(self.densepose_head(features_dp))

    def _forward_densepose(self, features: dict[str, torch.Tensor], instances: list[Instances]):
        if not self.densepose_on:
            return {} if self.training else instances
        features_list = [features[f] for f in self.in_features]
        if self.training:
            proposals, _ = select_foreground_proposals(instances, self.num_classes)
            proposals = self.densepose_data_filter(proposals)
            outputs = self._densepose_outputs(features_list, [x.proposal_boxes for x in proposals])
            params = [
                p for n, p in self.named_parameters() if n.startswith(("decoder.", "densepose_"))
            ]
            return self.densepose_losses(proposals, outputs, params=params)
        outputs = self._densepose_outputs(features_list, [x.pred_boxes for x in instances])
        densepose_inference(outputs, instances)
        return instances

    def forward(self, images, features, proposals, targets=None):
        instances, losses = super().forward(images, features, proposals, targets)
        if self.training:
            losses.update(self._forward_densepose(features, instances))
        return instances, losses

    def forward_with_given_boxes(self, features, instances):
        instances = super().forward_with_given_boxes(features, instances)
        return self._forward_densepose(features, instances)

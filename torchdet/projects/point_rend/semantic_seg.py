"""PointRend for semantic segmentation: a coarse semantic head (Panoptic FPN's by default)
refined at uncertain points by a point head.

Shape shorthand: N images, K classes, P points.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from torchdet.layers import ShapeSpec, cat
from torchdet.modeling import SEM_SEG_HEADS_REGISTRY

from .point_features import (
    get_uncertain_point_coords_on_grid,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from .point_head import build_point_head

__all__ = ["PointRendSemSegHead", "calculate_sem_seg_uncertainty"]


def calculate_sem_seg_uncertainty(sem_seg_logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of class logits: second-highest minus highest logit (0 is most uncertain).

    Args:
        sem_seg_logits (Tensor[N, K, ...]) with K >= 2.

    Returns:
        Tensor[N, 1, ...].
    """
    top2 = torch.topk(sem_seg_logits, k=2, dim=1)[0]
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


@SEM_SEG_HEADS_REGISTRY.register()
class PointRendSemSegHead(nn.Module):
    """Semantic head = coarse head (``MODEL.POINT_HEAD.COARSE_SEM_SEG_HEAD_NAME``) + point head.

    Training adds ``loss_sem_seg_point`` (cross-entropy at sampled points) to the coarse
    head's losses; inference upsamples 2x per subdivision step and re-predicts the most
    uncertain points, returning logits at ``common_stride / 2**steps`` of the input.
    """

    def __init__(self, cfg, input_shape: dict[str, ShapeSpec]):
        super().__init__()
        self.ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        self.coarse_sem_seg_head = SEM_SEG_HEADS_REGISTRY.get(
            cfg.MODEL.POINT_HEAD.COARSE_SEM_SEG_HEAD_NAME
        )(cfg, input_shape)
        self._init_point_head(cfg, input_shape)

    def _init_point_head(self, cfg, input_shape: dict[str, ShapeSpec]) -> None:
        if cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES != cfg.MODEL.POINT_HEAD.NUM_CLASSES:
            raise ValueError(
                f"MODEL.POINT_HEAD.NUM_CLASSES ({cfg.MODEL.POINT_HEAD.NUM_CLASSES}) must equal "
                f"MODEL.SEM_SEG_HEAD.NUM_CLASSES ({cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES})"
            )
        self.in_features = list(cfg.MODEL.POINT_HEAD.IN_FEATURES)
        missing = [f for f in self.in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MODEL.POINT_HEAD.IN_FEATURES {missing} are not backbone outputs "
                f"({list(input_shape)})"
            )
        self.train_num_points = cfg.MODEL.POINT_HEAD.TRAIN_NUM_POINTS
        self.oversample_ratio = cfg.MODEL.POINT_HEAD.OVERSAMPLE_RATIO
        self.importance_sample_ratio = cfg.MODEL.POINT_HEAD.IMPORTANCE_SAMPLE_RATIO
        self.subdivision_steps = cfg.MODEL.POINT_HEAD.SUBDIVISION_STEPS
        self.subdivision_num_points = cfg.MODEL.POINT_HEAD.SUBDIVISION_NUM_POINTS
        in_channels = int(sum(input_shape[f].channels for f in self.in_features))
        self.point_head = build_point_head(cfg, ShapeSpec(channels=in_channels, width=1, height=1))

    def _fine_grained(
        self, features: dict[str, torch.Tensor], coords: torch.Tensor
    ) -> torch.Tensor:
        return cat(
            [point_sample(features[f], coords, align_corners=False) for f in self.in_features],
            dim=1,
        )

    def forward(self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None):
        """
        Args:
            features: backbone feature maps by name.
            targets (Tensor[N, H, W] int64, optional): labels at the input size, in training.

        Returns:
            Training ``(None, losses)``; inference ``(Tensor[N, K, H', W'] logits, {})``.
        """
        coarse_logits = self.coarse_sem_seg_head.layers(features)
        if self.training:
            if targets is None:
                raise ValueError("PointRendSemSegHead needs targets in training")
            losses = self.coarse_sem_seg_head.losses(coarse_logits, targets)
            with torch.no_grad():
                point_coords = get_uncertain_point_coords_with_randomness(
                    coarse_logits,
                    calculate_sem_seg_uncertainty,
                    self.train_num_points,
                    self.oversample_ratio,
                    self.importance_sample_ratio,
                )
            coarse_features = point_sample(coarse_logits, point_coords, align_corners=False)
            point_logits = self.point_head(
                self._fine_grained(features, point_coords), coarse_features
            )
            point_targets = (
                point_sample(
                    targets.unsqueeze(1).to(torch.float),
                    point_coords,
                    mode="nearest",
                    align_corners=False,
                )
                .squeeze(1)
                .to(torch.long)
            )
            losses["loss_sem_seg_point"] = F.cross_entropy(
                point_logits, point_targets, reduction="mean", ignore_index=self.ignore_value
            )
            return None, losses

        sem_seg_logits = coarse_logits.clone()
        for _ in range(self.subdivision_steps):
            sem_seg_logits = F.interpolate(
                sem_seg_logits, scale_factor=2, mode="bilinear", align_corners=False
            )
            uncertainty_map = calculate_sem_seg_uncertainty(sem_seg_logits)
            point_indices, point_coords = get_uncertain_point_coords_on_grid(
                uncertainty_map, self.subdivision_num_points
            )
            coarse_features = point_sample(coarse_logits, point_coords, align_corners=False)
            point_logits = self.point_head(
                self._fine_grained(features, point_coords), coarse_features
            )
            N, C, H, W = sem_seg_logits.shape
            index = point_indices.unsqueeze(1).expand(-1, C, -1)
            sem_seg_logits = sem_seg_logits.reshape(N, C, H * W).scatter(2, index, point_logits)
            sem_seg_logits = sem_seg_logits.view(N, C, H, W)
        return sem_seg_logits, {}
